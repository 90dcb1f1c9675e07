"""``EventWindowDataset``: event windows as a map-style ``torch.utils.data.Dataset``.

The DataLoader counterpart of :class:`~torchrl_ext.samplers.EventSliceSampler`:
one or several dataset roots, items ordered by event name then dataset order,
and item dicts with ``text`` (the event name), ``mask``, ``episode``,
``event_step`` and ``timestamp``, plus every stored column of the window's rows
(``observation``, ``action``, ``next``...). Another project's constructor
arguments and items (MineStudio's ``EventDataset``) come from an item plugin
(:mod:`.items`).

Its storages pickle by path and reopen their files in a worker, so DataLoader
workers may start by any method; ``multiprocessing_context=torchrl_ext.datasets.loader_context()``
starts them without importing torch again in each (TorchRL's ``spawn`` does).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..storages import EpisodeView, ShardedStorage
from .index import EventIndex
from .items import window_items_for
from .query import WindowQuery, query_from
from .windows import Windows, concat_windows, select_windows, split_windows

__all__ = ["EventWindowDataset", "batchify"]


def batchify(items: Sequence[Any]) -> Any:
    """Collates item dicts: tensors stacked, numbers to tensors, strings kept as lists, dicts recursed."""
    first = items[0]
    if isinstance(first, torch.Tensor):
        whole = _whole(items)
        if whole is not None:  # items are consecutive slices of one batch tensor (frames decoded per batch): no copy
            return whole
        out = None
        if torch.utils.data.get_worker_info() is not None:  # as default_collate: stack straight into shared memory
            storage = first._typed_storage()._new_shared(sum(x.numel() for x in items), device=first.device)
            out = first.new(storage).resize_(len(items), *first.shape)
        return torch.stack(list(items), out=out)
    if isinstance(first, np.ndarray):
        return torch.from_numpy(np.stack(items))
    if isinstance(first, dict):
        return {k: batchify([it[k] for it in items]) for k in first}
    if isinstance(first, (bool, int, float, np.integer, np.floating)):
        return torch.tensor(items)
    return list(items)


class EventWindowDataset(Dataset):
    """Windows around events of one or several datasets.

    Args:
        roots: a dataset directory or URL (``gs://bucket/prefix``, read through
            the local cache, its pushed event index included), storage or
            :class:`~torchrl_ext.storages.EpisodeView` (only its episodes), or a list of them.
        query: the window rules; or pass them as keyword ``options``.
        where: SQL ``WHERE`` over each root's episode table.
        build_missing: what to do when a root's event index is missing or
            stale (see :meth:`EventIndex.open`); opening never writes.
        **options: the keyword form of ``query``: any
            :class:`~torchrl_ext.events.WindowQuery` field (``win_len`` is
            required), through :meth:`WindowQuery.from_options`; and an item
            plugin's arguments: ``compat="minestudio"`` (or MineStudio's own
            ``dataset_dirs=``, ``modal_kernel_callbacks=``...) returns MineStudio
            1.1.6's items and item list (see :mod:`torchrl_ext.interop.minestudio`).

    Examples:
        >>> from torchrl_ext.events import EventIndex
        >>> from torchrl_ext.synthetic import write_synthetic
        >>> import tempfile
        >>> root = write_synthetic(tempfile.mkdtemp() + "/ds", episodes=2, length=20, obs_shape=(2,), events_every=5)
        >>> _ = EventIndex.build(root)
        >>> ds = EventWindowDataset(root, WindowQuery(event_regex="tick:1", win_len=4))
        >>> item = ds[0]
        >>> item["text"], item["timestamp"].tolist(), int(item["observation"].shape[0])
        ('tick:1', [6, 7, 8, 9], 4)
    """

    def __init__(self, roots: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
                 query: WindowQuery | None = None, *, where: str | None = None, build_missing: str = "memory",
                 **options: Any) -> None:
        plugin, session = window_items_for(options), None
        if plugin is not None:
            roots, session = plugin.start(options, roots)
        if isinstance(roots, (str, os.PathLike, ShardedStorage, EpisodeView)):
            roots = [roots]
        if not roots:
            raise ValueError("`roots` must name at least one dataset directory, got an empty list")
        self.query = query_from(query, options, owner="EventWindowDataset")
        self.storages = [r if isinstance(r, (ShardedStorage, EpisodeView)) else ShardedStorage(r) for r in roots]
        parts = []
        for st in self.storages:
            eps = st.select_episodes(where)
            first, length = st.episode_bounds
            index = EventIndex.open(st.root, build_missing=build_missing)
            parts.append(select_windows(index, first, length, self.query, episodes=eps, split=False))
        self.windows: Windows = split_windows(concat_windows(parts), self.query)
        names = [str(n) for n in self.windows.names]
        self.texts = names if session is None else session.texts(names)
        self.plugin_items = None if session is None else session.items(self.storages, self.windows, self.texts)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        return self.__getitems__([idx])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        ids = np.asarray(indices, dtype=np.int64)
        n = len(self)
        if ids.size and (ids.min() < -n or ids.max() >= n):
            raise IndexError(f"index out of range for {n} windows: {ids.tolist()}")
        ids = ids % max(n, 1)
        if self.plugin_items is not None:
            return self.plugin_items.items(ids)
        w = self.windows
        rows, mask = w.rows_and_mask(ids)
        steps = w.steps(ids)
        out: list[dict[str, Any] | None] = [None] * len(ids)
        for r in np.unique(w.root_id[ids]):
            pos = np.flatnonzero(w.root_id[ids] == r)
            data = self.storages[int(r)].get(rows[pos]).to_dict()
            for j, p in enumerate(pos):
                wid = ids[p]
                item = _take(data, j)
                item["text"] = self.texts[int(w.name_id[wid])]
                item["mask"] = torch.from_numpy(mask[p])
                item["episode"] = int(w.episode[wid])
                item["event_step"] = int(w.event_step[wid])
                item["timestamp"] = torch.from_numpy(steps[p])
                if len(self.storages) > 1:
                    item["root"] = int(r)
                out[p] = item
        return out  # type: ignore[return-value]


def _whole(items: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """The ``[n, ...]`` tensor the items are the consecutive slices of, when they fill its whole storage.

    In DataLoader workers only a storage in shared memory qualifies (anything
    else would be copied there when the batch is sent).
    """
    first = items[0]
    storage, n = first.untyped_storage(), first.numel()
    if (first.storage_offset() != 0 or storage.nbytes() != len(items) * n * first.element_size()
            or not first.is_contiguous()
            or (torch.utils.data.get_worker_info() is not None and not storage.is_shared())):
        return None
    for i, t in enumerate(items):
        if (t.untyped_storage().data_ptr() != storage.data_ptr() or t.storage_offset() != i * n
                or t.shape != first.shape or t.dtype != first.dtype or not t.is_contiguous()):
            return None
    return first.new_empty(0).set_(storage, 0, (len(items), *first.shape))


def _take(data: dict[str, Any], j: int) -> dict[str, Any]:
    return {k: _take(v, j) if isinstance(v, dict) else v[j] for k, v in data.items()}
