"""``add_episode_metadata``: a metadata column computed per episode, added without rewriting shards.

The function runs over each episode's stored rows (CrowdPlay's
``run_callable``); the values go into a copy of the episode table under a new
file name, fsynced, and the manifest is then rewritten atomically to name it
(with its content checksum), all under the dataset's writer lock: a reader
sees the old table or the new one, never a mix, and no writer appends
meanwhile. Shards and event logs are untouched; the table's rows, and so the
manifest's ``num_episodes``, stay as they were.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..format import fsync_dir, read_manifest, resolve_inside, write_manifest
from ..format.episodes import EpisodeTable
from ..progress import track
from ..validation import user_path
from ..writer.lock import lock_dataset, unlock_dataset

__all__ = ["add_episode_metadata"]

logger = logging.getLogger(__name__)


def _episode_td(storage: Any, first: int, length: int, columns: Sequence[Any] | None) -> Any:
    rows = np.arange(first, first + length, dtype=np.int64)
    if columns is None:
        return storage.get(rows)
    import torch
    from tensordict import TensorDict

    td = TensorDict({}, batch_size=[length])
    for col in columns:
        key = (col,) if isinstance(col, str) else tuple(col)
        td.set(key, torch.from_numpy(storage.reader.gather_column(key, rows)))
    return td


def add_episode_metadata(root: str | os.PathLike, name: str, fn: Callable[[Any], Any], *,
                         columns: Sequence[str | Sequence[str]] | None = None, where: str | None = None,
                         params: Sequence[Any] = (), overwrite: bool = False, progress: bool = True) -> dict[int, Any]:
    """Computes ``fn(episode)`` for every episode (or those matching ``where``) into metadata column ``name``.

    Args:
        root: dataset directory (no :class:`~torchrl_ext.ShardWriter` may hold it).
        name: the new column, any metadata name (``"Aliens shot"``).
        fn: TensorDict ``[T]`` of one episode -> int, float, str or None (NULL).
        columns: stored columns to read (e.g. ``[("next", "reward")]``); default
            every column as ``storage.get`` returns it (frames are decoded:
            name the columns you need to keep it fast).
        where, params: only these episodes get a value; the others get NULL.
        overwrite: replace an existing column of that name.
        progress: show a progress bar.

    Returns:
        ``{episode: value}`` as stored.

    Raises:
        ValueError: ``name`` exists and ``overwrite`` is False, or is not a valid name.
        TypeError: ``fn`` returned something other than an int, float, str or None.
        RuntimeError: a writer holds the dataset.

    Example:
        >>> import tempfile
        >>> from torchrl_ext.synthetic import write_synthetic
        >>> from torchrl_ext import ShardedStorage
        >>> root = write_synthetic(tempfile.mkdtemp() + "/ds", episodes=3, length=4, obs_shape=(1,))
        >>> values = add_episode_metadata(root, "return", lambda ep: float(ep["next", "reward"].sum()),
        ...                               columns=[("next", "reward")], progress=False)
        >>> {e: round(v, 3) for e, v in values.items()}
        {0: 0.006, 1: 4.006, 2: 8.006}
        >>> ShardedStorage(root).select_episodes('"return" > 1').tolist()
        [1, 2]
    """
    from ..storages import ShardedStorage

    if not callable(fn):
        raise TypeError(f"`fn` must be callable, got {type(fn).__name__}")
    root = user_path(root, "root")
    lock = lock_dataset(root, "a ShardWriter holds this dataset; close it before adding metadata")
    try:
        storage = ShardedStorage(root, cache_bytes=0)
        table = storage.episode_table()
        try:
            if name in table.metadata_columns() and not overwrite:
                raise ValueError(f"episode metadata `{name}` exists already; pass overwrite=True to replace it")
        finally:
            table.close()
        ids = storage.select_episodes(where, tuple(params))
        ids = np.arange(storage.num_episodes) if ids is None else ids
        first, length = storage.episode_bounds
        values: dict[int, Any] = {}
        for e in track(ids.tolist(), f"add metadata {name}", unit="episode", enabled=progress):
            value = fn(_episode_td(storage, int(first[e]), int(length[e]), columns))
            values[int(e)] = value.item() if isinstance(value, np.generic) else value
        manifest = read_manifest(root)
        path = resolve_inside(root, manifest.episodes, str(root))
        # The new table gets a new name; the manifest naming it is the commit point.
        new_rel = f"episodes.{uuid.uuid4().hex[:12]}.sqlite"
        new_path = Path(root) / new_rel
        source = EpisodeTable.from_dataset(root, manifest.episodes)
        try:
            source.copy_to(new_path, manifest.num_episodes)
        finally:
            source.close()
        try:
            copy = EpisodeTable.open(new_path, create=True)
            try:
                copy.set_column(name, values)
                manifest.episodes_crc = copy.content_crc(manifest.num_episodes)
            finally:
                copy.close()
            fd = os.open(new_path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            fsync_dir(new_path.parent)
            manifest.episodes = new_rel
            write_manifest(root, manifest)
        except BaseException:
            new_path.unlink(missing_ok=True)
            raise
        path.unlink(missing_ok=True)
        logger.info("%s: metadata %r set for %d episodes", root, name, len(values))
        return values
    finally:
        unlock_dataset(root, lock)
