"""``EpisodeView``: the episodes of a dataset that match a metadata filter, as a storage of their own.

A view numbers the rows of its episodes ``0 .. len(view) - 1`` in dataset
order and maps them to the dataset's rows with one ``searchsorted`` over the
runs of consecutive selected episodes, so sampling from it costs the same
whether it excludes ten episodes or a million. Everything that takes a
storage therefore sees only the selected episodes: TorchRL's
``RandomSampler`` and ``SliceSampler(trajectories=view.episodes)``,
:class:`~torchrl_ext.samplers.EventSliceSampler` and
:class:`~torchrl_ext.events.EventWindowDataset` (``episode_bounds`` and
``select_episodes`` answer in the view's rows), ``DataLoader`` over
:class:`~torchrl_ext.storages.RowDataset`, and the exporters.

A view is a snapshot of the episode table when it was built; after new
episodes are written, ``refresh()`` the storage and build the view again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict
from torchrl.data.replay_buffers import Storage, TensorStorage

from ..compat.torchrl_storage import read_only_storage
from ..format import Key, Manifest
from ..format.episode_filters import combine_where, where_clause
from ..format.episodes import FIXED_COLUMNS
from ..writer import EpisodeTable
from .narrow import NarrowRows
from .routing import index_rows
from .sharded import ShardedStorage

__all__ = ["EpisodeView"]

_READ_ONLY = "EpisodeView is read-only; write episodes with torchrl_ext.ShardWriter and build a new view"


@read_only_storage
class EpisodeView(TensorStorage):
    """The rows of the episodes matching a filter, numbered from 0, as a read-only TorchRL storage.

    Args:
        storage: a :class:`ShardedStorage`, its dataset directory or URL
            (``gs://bucket/prefix``, read through the local cache), or another
            view (the new view narrows it).
        where: SQL ``WHERE`` over the episode table (metadata columns quoted
            when they are not plain names: ``"Active playtime" > 30``).
        params: values for ``?`` placeholders in ``where``.
        episodes: episode ids to keep (intersected with the filters).
        filters: keyword filters whose names are not Python identifiers,
            e.g. ``{"env:game": "qbert", "Active playtime__ge": 30}`` (see
            :mod:`torchrl_ext.format.episode_filters`).
        **keyword_filters: more keyword filters, e.g. ``game="qbert", Score__ge=100``.

    Attributes:
        base: the dataset's :class:`ShardedStorage`.
        episode_ids: the selected episode ids (sorted int64).
        where, params: the SQL the filters amount to.

    Example:
        >>> import tempfile
        >>> from torchrl_ext import ShardWriter, ShardedStorage
        >>> from torchrl_ext.synthetic import make_episode
        >>> root = tempfile.mkdtemp() + "/ds"
        >>> with ShardWriter.create(root, shard_rows=8) as w:
        ...     for e in range(4):
        ...         _ = w.add_episode(make_episode(e, 3, (2,)), metadata={"game": "pong" if e % 2 else "qbert"})
        >>> view = EpisodeView(root, game="pong")
        >>> view.episode_ids.tolist(), len(view), view[0]["episode"].item(), view.episodes.tolist()
        ([1, 3], 6, 1, [1, 1, 1, 3, 3, 3])
    """

    @property
    def concurrent_reads(self) -> bool:
        """True when the base storage's reads are thread-safe (the view itself is immutable)."""
        return getattr(self.base, "concurrent_reads", False) is True

    read_only_message = _READ_ONLY

    def __init__(self, storage: ShardedStorage | EpisodeView | str | os.PathLike, where: str | None = None,
                 params: Sequence[Any] = (), *, episodes: Sequence[int] | np.ndarray | None = None,
                 filters: Mapping[str, Any] | None = None, **keyword_filters: Any) -> None:
        parent = storage if isinstance(storage, EpisodeView) else None
        if parent is not None:
            base = parent.base
        elif isinstance(storage, ShardedStorage):
            base = storage
        elif isinstance(storage, (str, os.PathLike)):
            base = ShardedStorage(storage)
        else:
            raise TypeError(f"`storage` must be a ShardedStorage, an EpisodeView or a dataset path or URL, got "
                            f"{type(storage).__name__}")
        if where is not None and not isinstance(where, str):
            raise TypeError(f"`where` must be an SQL WHERE clause (str) or None, got {where!r}")
        if filters is not None and not isinstance(filters, Mapping):
            raise TypeError(f"`filters` must be a mapping of name -> value, got {type(filters).__name__}")
        self.base = base
        table = base.episode_table()
        try:
            columns = list(FIXED_COLUMNS) + list(table.metadata_columns())
            kw = where_clause({**(filters or {}), **keyword_filters}, columns)
            self.where, self.params = combine_where((where, tuple(params)), kw)
            ids = table.select(self.where, self.params, num_episodes=base.num_episodes)
        finally:
            table.close()
        if parent is not None:
            ids = np.intersect1d(ids, parent.episode_ids)
            self.where, self.params = combine_where((parent.where, parent.params), (self.where, self.params))
        if episodes is not None:
            ids = np.intersect1d(ids, np.asarray(episodes, dtype=np.int64))
        self._select(ids)
        self.device = base.device
        Storage.__init__(self, max_size=len(self))

    def _select(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        first, length = self.base.episode_bounds
        n = len(length)
        sel_len = length[ids]
        view_first = np.concatenate(([0], np.cumsum(sel_len)[:-1])).astype(np.int64)
        runs = np.ones(len(ids), bool)
        runs[1:] = ids[1:] != ids[:-1] + 1  # consecutive episodes are consecutive rows
        self._seg_view = view_first[runs]
        self._seg_base = first[ids][runs]
        self.episode_ids = ids
        self._num_rows = int(sel_len.sum())
        self._first = np.zeros(n, np.int64)
        self._length = np.zeros(n, np.int64)
        self._first[ids] = view_first
        self._length[ids] = sel_len
        self._first.flags.writeable = self._length.flags.writeable = False
        self._episodes = torch.from_numpy(np.repeat(ids, sel_len))

    # ------------------------------------------------------------------ the storage's surface
    @property
    def root(self):
        return self.base.root

    @property
    def manifest(self) -> Manifest:
        return self.base.manifest

    @property
    def num_episodes(self) -> int:
        return int(self.episode_ids.shape[0])

    @property
    def episode_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(first_row, length)`` per dataset episode id, in the view's rows; excluded episodes have length 0."""
        return self._first, self._length

    @property
    def episodes(self) -> torch.Tensor:
        """Episode id of every view row, e.g. ``SliceSampler(trajectories=view.episodes)``."""
        return self._episodes

    @property
    def storage_keys(self) -> list[Key]:
        return self.base.storage_keys

    def __len__(self) -> int:
        return self._num_rows

    def episode_table(self) -> EpisodeTable:
        """The dataset's episode table, read-only (all episodes; :meth:`select_episodes` restricts)."""
        return self.base.episode_table()

    def select_episodes(self, where: str | None, params: Sequence[Any] = ()) -> np.ndarray:
        """Ids of the view's episodes that also match ``where`` (all of them for None)."""
        if not where:
            return self.episode_ids.copy()
        return np.intersect1d(self.base.select_episodes(where, tuple(params)), self.episode_ids)

    def filter(self, where: str | None = None, params: Sequence[Any] = (), **keyword_filters: Any) -> EpisodeView:
        """A narrower view: these episodes that also match ``where`` and the keyword filters."""
        return EpisodeView(self, where, params, **keyword_filters)

    def metadata(self, columns: Sequence[str] | None = None) -> dict[str, list[Any]]:
        """``{column: values}`` of the selected episodes (default: every metadata column plus ``episode``)."""
        table = self.episode_table()
        try:
            cols = list(columns) if columns is not None else ["episode", *table.metadata_columns()]
            rows = table.values(cols, self.episode_ids.tolist())
        finally:
            table.close()
        return {c: [r[i] for r in rows] for i, c in enumerate(cols)}

    # ------------------------------------------------------------------ reading
    def base_rows(self, index: Any) -> np.ndarray:
        """Dataset rows of view rows ``index`` (int, slice, sequence, array or tensor; same shape)."""
        idx = index_rows(index, self._num_rows)
        seg = np.searchsorted(self._seg_view, idx, side="right") - 1
        return self._seg_base[seg] + (idx - self._seg_view[seg])

    def get(self, index: Any) -> TensorDict:
        return self.base.get(self.base_rows(index))

    def narrow(self, keys: Any) -> Any:
        """This view, read-only, with reads that return only ``keys`` (see ``ShardedStorage.narrow``):
        what TorchRL's slice samplers read of their rows, the flags, without the frames."""
        wanted = self.base.narrow(keys)
        cached = self.__dict__.setdefault("_narrow_views", {}).get(wanted.keys)
        if cached is None or cached.narrowed_base is not wanted:
            cached = self._narrow_views[wanted.keys] = NarrowRows(self, wanted)
        return cached

    def random_rows(self, batch_size: int) -> torch.Tensor:
        if self._num_rows == 0:
            raise RuntimeError(f"{self.root}: the view selects no rows (filter {self.where!r}); nothing to sample")
        return torch.randint(0, self._num_rows, (batch_size,), generator=self._rng)

    def state_dict(self) -> dict[str, Any]:
        return {"root": str(self.root), "num_rows": len(self), "episodes": self.episode_ids.tolist()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("episodes") != self.episode_ids.tolist():
            raise ValueError(f"state_dict is of a view over other episodes ({len(state_dict.get('episodes', []))} "
                             f"episodes, this view has {self.num_episodes}); build the same view first")

    def __getstate__(self) -> dict[str, Any]:
        state = Storage.__getstate__(self)  # TensorStorage's assumes an in-memory tensor storage
        state.pop("_narrow_views", None)
        return state  # the base storage pickles by path

    def __setstate__(self, state: dict[str, Any]) -> None:
        Storage.__setstate__(self, state)

    def __repr__(self) -> str:
        return (f"EpisodeView(root={str(self.root)!r}, where={self.where!r}, episodes={self.num_episodes}, "
                f"rows={len(self)})")
