"""``import_torchrl_buffer``: a stored TorchRL replay buffer as a sharded dataset with compressed columns.

One pass, resumable: episodes are written in order and a rerun continues
after the last committed one. Rows are grouped into episodes by the first of
``episode``, ``("collector", "traj_ids")`` or ``traj_ids`` the buffer holds
(rows of one episode may be interleaved with others', as parallel collectors
write them), or else split after every ``("next", "done")``. An observation
key whose ``("next", key)`` is the next row's value in every episode is stored
once (plus each episode's final value); otherwise ``("next", key)`` is kept as
a column of its own, so nothing the buffer held is lost. The buffer's own
bookkeeping (``index``, ``episode``, ``step``, ``collector``) is not copied:
the dataset numbers episodes and steps itself and keeps each episode's id in
the buffer as metadata (``source_episode``, with ``source_first_row``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ...format import MANIFEST_NAME, read_manifest
from ...progress import ProgressBar
from ...validation import user_path
from ...writer import ShardWriter
from .layout import BufferColumns, read_buffer_dir

__all__ = ["EPISODE_KEYS", "import_torchrl_buffer"]

logger = logging.getLogger(__name__)

Key = tuple[str, ...]
EPISODE_KEYS: tuple[Key, ...] = (("episode",), ("collector", "traj_ids"), ("traj_ids",))
DROPPED: tuple[Key, ...] = (("index",), ("episode",), ("step",))  # the buffer's bookkeeping; the dataset owns these
DONE_KEYS = ("done", "terminated", "truncated")
COMPARE_ROWS = 4096


def _episodes(buf: BufferColumns, episode_key: Key | None) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Buffer rows of each episode (oldest first) and each episode's id in the buffer (or None)."""
    order = buf.order
    if episode_key is not None:
        ids = np.asarray(buf.columns[episode_key][order]).reshape(len(order), -1)[:, 0]
        uniq, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
        by_first = np.argsort(first, kind="stable")  # episode ids in order of their first row
        rank = np.empty_like(by_first)
        rank[by_first] = np.arange(len(uniq))
        row_rank = rank[inverse.reshape(-1)]
        grouped = np.argsort(row_rank, kind="stable")  # positions grouped by episode, oldest first within
        parts = np.split(grouped, np.cumsum(np.bincount(row_rank, minlength=len(uniq)))[:-1])
        return [order[p] for p in parts], uniq[by_first]
    done = _done(buf)[order]
    cuts = np.flatnonzero(done[:-1]) + 1
    return [part for part in np.split(order, cuts) if len(part)], None


def _done(buf: BufferColumns) -> np.ndarray:
    cols = buf.columns
    if ("next", "done") in cols:
        return np.asarray(cols[("next", "done")]).reshape(len(cols[("next", "done")]), -1).any(1)
    flags = [np.asarray(cols[("next", k)]).reshape(len(cols[("next", k)]), -1).any(1)
             for k in ("terminated", "truncated") if ("next", k) in cols]
    if not flags:
        raise ValueError(f"{buf.path}: no ('next', 'done') nor terminated/truncated flags and no episode key "
                         f"(one of {['/'.join(k) for k in EPISODE_KEYS]}); pass `episode_key=` naming the "
                         "column that identifies episodes")
    return np.logical_or.reduce(flags)


def _next_is_next_row(col: np.ndarray, nxt: np.ndarray, episodes: list[np.ndarray]) -> bool:
    """Whether ``nxt[r_t] == col[r_{t+1}]`` for consecutive rows of every episode (compared in chunks)."""
    here = np.concatenate([e[:-1] for e in episodes]) if episodes else np.zeros(0, np.int64)
    after = np.concatenate([e[1:] for e in episodes]) if episodes else np.zeros(0, np.int64)
    for i in range(0, len(here), COMPARE_ROWS):
        if not np.array_equal(nxt[here[i:i + COMPARE_ROWS]], col[after[i:i + COMPARE_ROWS]], equal_nan=True):
            return False
    return True


def _default_encodings(columns: dict[Key, np.ndarray], store_next: list[Key]) -> dict[Key, str]:
    """uint8 columns of frames (at least 2 dims per row) compressed with zstd; the rest raw."""
    stored_once = {("next", *k) for k in columns if ("next", *k) in columns and k not in store_next}
    return {k: "zstd" for k, v in columns.items() if v.dtype == np.uint8 and v.ndim >= 3 and k not in stored_once}


def _nest(flat: dict[Key, np.ndarray]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        for part in key[:-1]:
            node = node.setdefault(part, {})
        node[key[-1]] = value
    return out


def _check_ted(buf: BufferColumns) -> None:
    if ("next", "reward") not in buf.columns:
        raise ValueError(f"{buf.path}: the buffer has no ('next', 'reward'); expected TorchRL's TED layout "
                         f"(found {sorted('/'.join(k) for k in buf.columns)})")


def import_torchrl_buffer(source: str | os.PathLike, root: str | os.PathLike, *, episode_key: Any = "auto",
                          encodings: dict | None = None, shard_rows: int | None = None,
                          progress: bool = True) -> Any:
    """Converts a TorchRL buffer saved on disk into a sharded dataset at ``root`` (resumable).

    Args:
        source: ``rb.dumps(path)`` output, or a memmap TensorDict directory
            (a ``LazyMemmapStorage``'s ``scratch_dir``, TorchRL's dataset wrappers' data).
        root: the new dataset (a rerun resumes after its committed episodes).
        episode_key: column naming each row's episode (``"auto"``: the first of
            :data:`EPISODE_KEYS` present; ``None``: split after ``("next", "done")``).
        encodings: column encodings (default: zstd for uint8 frame columns, raw otherwise).
        shard_rows: rows per shard (see :meth:`ShardWriter.create`).
        progress: show a progress bar.

    Returns:
        A :class:`~torchrl_ext.ShardedStorage` over ``root``.
    """
    from ...storages import ShardedStorage

    buf = read_buffer_dir(user_path(source, "source"))
    root = user_path(root, "root")
    _check_ted(buf)
    if episode_key == "auto":
        key = next((k for k in EPISODE_KEYS if k in buf.columns), None)
    else:
        key = None if episode_key is None else ((episode_key,) if isinstance(episode_key, str) else tuple(episode_key))
        if key is not None and key not in buf.columns:
            raise ValueError(f"`episode_key` {'/'.join(key)!r} is not a column of {buf.path}; columns are "
                             f"{sorted('/'.join(k) for k in buf.columns)}")
    episodes, ids = _episodes(buf, key)
    kept = {k: v for k, v in buf.columns.items() if k not in DROPPED and k != key and k[0] != "collector"}
    if ("next", "done") not in kept:
        kept[("next", "done")] = _done(buf)[:, None]
    store_next = [k for k in kept if k[0] != "next" and k[-1] not in DONE_KEYS and ("next", *k) in kept
                  and not _next_is_next_row(kept[k], kept[("next", *k)], episodes)]
    if store_next:
        logger.info("%s: %s kept as columns of their own (not the next row's value)", buf.path,
                    ["next/" + "/".join(k) for k in store_next])
    source_info = {"kind": "torchrl_buffer", "path": str(buf.path.resolve()), "rows": int(len(buf.order)),
                   "episode_key": None if key is None else "/".join(key)}
    writer = _writer(root, source_info, encodings if encodings is not None else _default_encodings(kept, store_next),
                     shard_rows, store_next)
    start = writer.num_episodes
    with writer, ProgressBar("import torchrl", len(episodes), unit="episode", initial=start,
                             enabled=progress) as bar:
        for e in range(start, len(episodes)):
            rows = episodes[e]
            td = _nest({k: np.ascontiguousarray(v[rows]) for k, v in kept.items()})
            meta = {"source_first_row": int(rows[0])}
            if ids is not None:
                meta["source_episode"] = ids[e].item()
            writer.add_episode(td, metadata=meta)
            bar.update(1)
    return ShardedStorage(root)


def _writer(root: Path, source: dict, encodings: dict, shard_rows: int | None, store_next: list[Key]) -> ShardWriter:
    if (root / MANIFEST_NAME).exists():
        manifest = read_manifest(root)
        if manifest.source != source:
            raise ValueError(f"{root} holds a dataset made from {manifest.source}, not {source}; choose another "
                             "root or delete it")
        if manifest.schema:  # resume after the committed episodes
            return ShardWriter.open(root)
    return ShardWriter.create(root, shard_rows=shard_rows, source=source, encodings=encodings,
                              store_next=store_next, overwrite=True)
