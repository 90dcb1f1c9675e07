"""ShardedStorage: a read-only TorchRL Storage over a sharded dataset (a thin adapter of ShardReader)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict
from torchrl.data.replay_buffers import Storage, TensorStorage

from ..compat.torchrl_storage import bump_revision, read_only_storage
from ..format import EpisodeTable, Key, Manifest
from .batch_memory import as_tensor
from .checkpoint import ShardedStorageCheckpointer
from .narrow import NarrowStorage
from .reader import ShardReader

__all__ = ["ShardedStorage"]

_READ_ONLY = (
    "ShardedStorage is read-only; write episodes with torchrl_ext.ShardWriter.open(root) "
    "and call storage.refresh() to see them"
)


@read_only_storage
class ShardedStorage(TensorStorage):
    """Global row index -> rows of memory-mapped shards, for TorchRL replay buffers.

    It derives from TorchRL's ``TensorStorage`` (a ``Storage``) only so that
    replay buffers pick their TensorDict collate without extra arguments; the
    rows come from a :class:`~torchrl_ext.storages.ShardReader`.

    ``get`` accepts an int (negative counts from the end), a slice or range,
    a list, a numpy array or an integer tensor of any shape (the result's
    batch shape is the index shape) and returns a TensorDict with the stored
    columns plus the ``("next", key)`` values rebuilt from the following row
    of the same episode (or the episode's final value, or zeros). Encoded
    columns are decoded on read, each touched chunk once per call.

    Args:
        root: dataset directory written by :class:`torchrl_ext.ShardWriter`, or
            its URL after ``torchrl-ext push`` (``gs://bucket/prefix``): opened
            through a local cache, each shard fetched and verified on first touch.
        device: device of the returned tensors (data is read on the CPU).
        cache_bytes: small columns (at most 64 bytes per row: actions, rewards,
            flags, ids) are copied into one in-RAM array each while their total
            stays within this budget, so a batch reads them with one gather
            instead of one per shard. ``0`` keeps everything memory-mapped.
        verify: ``"off"``, ``"first-read"`` (check a shard's checksum the first
            time it is read) or ``"open"`` (check every shard now); both check
            the episode table's content when it is loaded.
        decode_cache_bytes: decoded chunks of encoded columns kept for reuse.
        decode_threads: threads decoding the chunks of one read.
        rows_view: ``view(reader, rows, arrays) -> arrays`` applied to every
            read (frame stacks); when it has a ``reads(reader)`` method, the
            reader gathers only the keys that returns (None: all).
        cache_dir: where a remote dataset is cached (default ``~/.cache/torchrl_ext/remote``).
        disk_cache_bytes: bytes a remote dataset's fetched shards may occupy (None: no
            limit); the least recently used shards no reader has open are evicted.

    ``ReplayBuffer.dumps(path)`` records the dataset's root and row count
    (:mod:`.checkpoint`), not its rows; ``loads`` reopens it.

    With ``SliceSampler``, pass ``trajectories=storage.episodes`` (as TorchRL's
    own Atari dataset does) so the sampler never reads the whole dataset;
    ``traj_key="episode"`` also works but reads ``storage[:]`` on every sample.

    Example:
        >>> from torchrl.data import TensorDictReplayBuffer, RandomSampler
        >>> from torchrl_ext import ShardedStorage
        >>> from torchrl_ext.synthetic import write_synthetic
        >>> import tempfile
        >>> root = write_synthetic(tempfile.mkdtemp() + "/ds", episodes=4, length=5, obs_shape=(2,))
        >>> rb = TensorDictReplayBuffer(storage=ShardedStorage(root), sampler=RandomSampler(), batch_size=8)
        >>> batch = rb.sample()
        >>> batch["observation"].shape, bool((batch["step"] < 5).all())
        (torch.Size([8, 2]), True)
    """

    concurrent_reads = True  # get() is safe from several threads at once (ReplayBuffer prefetch)

    read_only_message = _READ_ONLY

    def __init__(self, root: str | os.PathLike, *, device: torch.device | str = "cpu",
                 cache_bytes: int = 128 << 20, verify: str = "off", decode_cache_bytes: int = 64 << 20,
                 decode_threads: int | None = None,
                 rows_view: Callable[[ShardReader, np.ndarray, dict], dict] | None = None,
                 cache_dir: str | os.PathLike | None = None, disk_cache_bytes: int | None = None) -> None:
        self.reader = ShardReader(root, cache_bytes=cache_bytes, verify=verify,
                                  decode_cache_bytes=decode_cache_bytes, decode_threads=decode_threads,
                                  cache_dir=cache_dir, disk_cache_bytes=disk_cache_bytes)
        self.root = self.reader.root
        self.device = torch.device(device)
        self.cache_bytes = cache_bytes
        self._rows_view = rows_view
        self._episodes_tensor = None
        self._narrow_views: dict[tuple[Key, ...], NarrowStorage] = {}
        Storage.__init__(self, max_size=self.reader.num_rows)

    # ------------------------------------------------------------------ properties
    @property
    def checkpointer(self) -> Any:
        """What ``ReplayBuffer.dumps``/``loads`` use: the dataset's root and row count, never its rows."""
        return self._dataset_checkpointer

    @checkpointer.setter
    def checkpointer(self, value: Any) -> None:  # replay buffers set None (their default) on every storage
        self._dataset_checkpointer = ShardedStorageCheckpointer() if value is None else value

    @property
    def manifest(self) -> Manifest:
        return self.reader.manifest

    @property
    def num_shards(self) -> int:
        return self.reader.num_shards

    @property
    def offsets(self) -> np.ndarray:
        """The first global row of every shard, and the row count last (int64 ``[num_shards + 1]``)."""
        return self.reader.offsets

    def will_need(self, shards: list[int]) -> None:
        """Fetches these shards of a remote dataset in the background (a local dataset has them all)."""
        self.reader.will_need(shards)

    @property
    def num_episodes(self) -> int:
        return self.reader.num_episodes

    @property
    def episode_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(first_row, length)`` arrays of every episode (read-only views)."""
        return self.reader.ep_first, self.reader.ep_len

    @property
    def episodes(self) -> torch.Tensor:
        """Episode id of every row (int64 ``[len]``), e.g. ``SliceSampler(trajectories=storage.episodes)``."""
        ids = self.reader.episode_ids
        if self._episodes_tensor is None or self._episodes_tensor.shape[0] != ids.shape[0]:
            self._episodes_tensor = torch.from_numpy(ids)
        return self._episodes_tensor

    @property
    def storage_keys(self) -> list[Key]:
        return [c.key for c in self.reader.columns] + [("next", *k) for k in self.reader.next_keys]

    def episode_table(self) -> EpisodeTable:
        """Opens the episode table read-only (SQL metadata filters)."""
        return self.reader.episode_table()

    def select_episodes(self, where: str | None, params: tuple = ()) -> np.ndarray | None:
        """Ids of the visible episodes matching an SQL ``WHERE`` clause (None: no filter)."""
        return self.reader.select_episodes(where, params)

    def episode(self, i: int) -> TensorDict:
        """Every row of episode ``i`` as one TensorDict ``[T]`` (with next observations)."""
        n = self.num_episodes
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not -n <= i < n:
            raise IndexError(f"episode {i!r} is out of range for a dataset of {n} episodes")
        i = int(i) % n
        first, length = int(self.reader.ep_first[i]), int(self.reader.ep_len[i])
        return self.get(slice(first, first + length))

    def iterate_episodes(self, where: str | None = None, params: tuple = ()):
        """Yields ``(episode TensorDict [T], metadata dict)`` for every episode matching ``where``.

        Example:
            >>> from torchrl_ext.synthetic import write_synthetic
            >>> import tempfile
            >>> storage = ShardedStorage(write_synthetic(tempfile.mkdtemp() + "/ds", episodes=4, length=3,
            ...                                          obs_shape=(1,)))
            >>> [(td["step"].tolist(), meta["game"]) for td, meta in storage.iterate_episodes("score >= 2")]
            [([0, 1, 2], 'pong'), ([0, 1, 2], 'breakout')]
        """
        ids = self.select_episodes(where, params)
        table = self.episode_table()
        try:
            for e in (range(self.num_episodes) if ids is None else ids.tolist()):
                yield self.episode(e), table.metadata(e)
        finally:
            table.close()

    def __len__(self) -> int:
        return self.reader.num_rows

    def random_rows(self, batch_size: int) -> torch.Tensor:
        if len(self) == 0:
            raise RuntimeError(f"{self.root}: the dataset has no rows to sample")
        return torch.randint(0, len(self), (batch_size,), generator=self._rng)

    # ------------------------------------------------------------------ reading
    def get(self, index: Any) -> TensorDict:
        idx = self.reader.index_array(index)
        td = rows_td(self.read_arrays(idx.reshape(-1)), idx.shape)
        if self.device.type != "cpu":
            td = td.to(self.device, non_blocking=True)
        return td

    def read_arrays(self, rows: np.ndarray) -> dict[Key, np.ndarray]:
        """What :meth:`get` returns, as numpy arrays on the CPU, for checked global ``rows`` (int64, 1-d).

        For callers that join several storages' rows (:class:`~torchrl_ext.datasets.MultiRunStorage`):
        one TensorDict at the end instead of one per storage.
        """
        view = self._rows_view
        reads = getattr(view, "reads", None)  # a view that reads some columns its own way names the others
        arrays = self.reader.gather(rows, None if reads is None else reads(self.reader))
        return arrays if view is None else view(self.reader, rows, arrays)

    def narrow(self, keys: Iterable[str | Key]) -> NarrowStorage:
        """This storage, read-only, with reads that return only ``keys`` (the same view for the same keys).

        TorchRL's ``SliceSampler`` reads a few flags of the rows it samples;
        given this view it reads them alone instead of every column.
        """
        if isinstance(keys, str) or (isinstance(keys, tuple) and all(isinstance(k, str) for k in keys)):
            raise TypeError(f"`keys` must be a list of keys, got the single key {keys!r}; pass [{keys!r}]")
        wanted = tuple(dict.fromkeys((k,) if isinstance(k, str) else tuple(k) for k in keys))
        view = self._narrow_views.get(wanted)
        if view is None:
            view = self._narrow_views[wanted] = NarrowStorage(self, wanted, gathers=self._rows_view is None)
        return view

    def refresh(self) -> int:
        """Picks up shards committed since opening; returns the number of new rows."""
        new = self.reader.refresh()
        self.max_size = len(self)
        bump_revision(self)
        return new

    def verify(self, progress: Callable[[int], None] | None = None) -> None:
        """Recomputes every shard's checksum; raises FormatError on a mismatch."""
        self.reader.verify(progress)

    def at(self, root: str | os.PathLike) -> ShardedStorage:
        """A storage of this kind and these settings (device, caches, row view) over another dataset.

        ``preprocess_buffer(..., swap=True)`` uses it so a buffer keeps sampling
        the same way (e.g. frame stacks) from the preprocessed copy.
        """
        return ShardedStorage(root, device=self.device, cache_bytes=self.cache_bytes, verify=self.reader.verify_mode,
                              rows_view=self._rows_view)

    # ------------------------------------------------------------------ state and pickling
    def state_dict(self) -> dict[str, Any]:
        return {"root": str(Path(self.root).absolute()), "num_rows": len(self), "num_shards": self.num_shards}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        root = Path(state_dict["root"])
        if root != self.root:
            self.reader = ShardReader(root, cache_bytes=self.cache_bytes, verify=self.reader.verify_mode)
            self.root = root
        elif state_dict["num_rows"] > len(self):
            self.refresh()
        if state_dict["num_rows"] > len(self):
            raise ValueError(
                f"state_dict expects {state_dict['num_rows']} rows, {self.root} holds {len(self)}"
            )
        self.reader.num_rows = state_dict["num_rows"]
        self.max_size = len(self)

    def __getstate__(self) -> dict[str, Any]:
        state = Storage.__getstate__(self)
        state.pop("_episodes_tensor", None)
        state.pop("_narrow_views", None)
        return state  # the reader pickles by path

    def __setstate__(self, state: dict[str, Any]) -> None:
        Storage.__setstate__(self, state)
        self._episodes_tensor = None
        self._narrow_views = {}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, rows={len(self)}, "
                f"shards={self.num_shards}, episodes={self.num_episodes})")


def rows_td(flat: dict[Key, np.ndarray], shape: tuple[int, ...]) -> TensorDict:
    """A TensorDict of batch ``shape`` over ``flat``'s arrays (``{key: [prod(shape), ...]}``), without copies."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        d = nested
        for k in key[:-1]:
            d = d.setdefault(k, {})
        d[key[-1]] = as_tensor(value, shape + value.shape[1:])  # a worker's shared batch stays shared
    return TensorDict(nested, batch_size=shape)
