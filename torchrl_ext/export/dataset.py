"""``export_episodes``: the episodes a view selects as a new dataset, optionally transformed.

The filtered counterpart of :func:`torchrl_ext.preprocess`: each selected
episode is read as ``storage.get`` returns it, passed through ``fn`` (a
row-wise function, e.g. a preprocessing preset), and appended to a new dataset
with its metadata and events; episodes are renumbered from 0 in the source's
order. One process, resumable (a run again continues after the episodes
already committed).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..format import MANIFEST_NAME, read_event_log, read_manifest
from ..progress import ProgressBar
from ..validation import user_path
from .selection import episodes_of

__all__ = ["export_episodes"]

_OWNED = ("episode", "step")


def _events(storage: Any) -> dict[int, list[tuple[int, str, float]]]:
    out: dict[int, list[tuple[int, str, float]]] = {}
    for rel in storage.manifest.event_logs:
        log = read_event_log(Path(storage.root) / rel, root=storage.root)
        names = log["names"]
        for e, s, n, v in zip(log["episode"].tolist(), log["step"].tolist(), log["name_id"].tolist(),
                              log["value"].tolist()):
            out.setdefault(e, []).append((s, str(names[n]), v))
    return out


def _source_encodings(storage: Any) -> dict[tuple[str, ...], Any]:
    return {c.key: {"name": c.encoding, **c.options_dict} for c in storage.manifest.schema
            if c.encoding != "raw" and c.key[-1] not in _OWNED}


def export_episodes(source: Any, dest: str | os.PathLike, *, fn: Callable[[Any], Any] | None = None,
                    encodings: Mapping[Any, Any] | None = None, shard_rows: int | None = None,
                    shard_bytes: int | None = None, progress: bool = True, operation: str = "export") -> Any:
    """Writes the episodes of ``source`` (a view: only its own) into a new dataset at ``dest``.

    Args:
        source: dataset directory, :class:`~torchrl_ext.ShardedStorage` or
            :class:`~torchrl_ext.storages.EpisodeView`.
        dest: new dataset directory (an interrupted export there resumes).
        fn: TensorDict ``[T]`` of one episode (with ``episode`` and ``step``)
            -> TensorDict ``[T]``; default: the rows unchanged.
        encodings: column encodings of ``dest`` (default: the source's when
            ``fn`` is None, else raw).
        shard_rows, shard_bytes: shard size (see :meth:`torchrl_ext.ShardWriter.create`).
        progress: show a progress bar.
        operation: what the progress bar calls the work (``"preprocess"`` when
            :func:`~torchrl_ext.preprocess` writes a filtered copy through here).

    Returns:
        A :class:`~torchrl_ext.ShardedStorage` over ``dest``. An episode
        without a stored final observation gets the zeros the source returns.

    Example:
        >>> import tempfile
        >>> from torchrl_ext.storages import EpisodeView
        >>> from torchrl_ext.synthetic import write_synthetic
        >>> root = write_synthetic(tempfile.mkdtemp() + "/ds", episodes=4, length=3, obs_shape=(1,))
        >>> out = export_episodes(EpisodeView(root, episodes=[1, 3]), tempfile.mkdtemp() + "/two", progress=False)
        >>> out.num_episodes, out[3]["observation"].tolist() == EpisodeView(root, episodes=[3])[0]["observation"].tolist()
        (2, True)
    """
    from ..format.episodes import FIXED_COLUMNS
    from ..storages import ShardedStorage
    from ..writer import ShardWriter

    storage, ids = episodes_of(source)
    dest = user_path(dest, "dest")
    if dest.resolve() == Path(storage.root).resolve():
        raise ValueError(f"`dest` {dest} is the source dataset; choose a new directory")
    origin = {"kind": "export", "source": str(Path(storage.root).resolve()), "episodes": ids.tolist()}
    if (dest / MANIFEST_NAME).exists():
        if read_manifest(dest).source != origin:
            raise ValueError(f"`dest` {dest} holds another dataset; choose a new directory")
        writer = ShardWriter.open(dest)
    else:
        enc = _source_encodings(storage) if encodings is None and fn is None else dict(encodings or {})
        writer = ShardWriter.create(dest, shard_rows=shard_rows, shard_bytes=shard_bytes, source=origin,
                                    encodings=enc)
    events = _events(storage)
    first, length = storage.episode_bounds
    table = storage.episode_table()
    bar = ProgressBar(operation, len(ids), unit="episode", initial=writer.num_episodes, enabled=progress)
    completed = False
    try:
        for e in ids[writer.num_episodes:].tolist():
            td = storage.get(np.arange(first[e], first[e] + length[e]))
            if fn is not None:
                td = fn(td)
            meta = {k: v for k, v in table.metadata(e).items() if k not in FIXED_COLUMNS and v is not None}
            writer.add_episode(td.exclude(*_OWNED), metadata=meta, events=events.get(e, []))
            bar.update(1)
        writer.flush()
        completed = True
    finally:
        bar.close(completed=completed)
        table.close()
        writer.close()
    return ShardedStorage(dest)
