"""ShardedStorage: a read-only TorchRL Storage over a sharded memmap dataset."""

from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict
from torchrl.data.replay_buffers import Storage, TensorStorage

from ..episodes import EpisodeTable
from ..format import (
    Column,
    FormatError,
    Key,
    Manifest,
    column_path,
    read_manifest,
    validate_shards,
)
from .routing import gather, route

__all__ = ["ShardedStorage"]

logger = logging.getLogger(__name__)

_READ_ONLY = (
    "ShardedStorage is read-only; write episodes with torchrl_ext.ShardWriter.open(root) "
    "and call storage.refresh() to see them"
)


class ShardedStorage(TensorStorage):
    """Global row index -> rows of memory-mapped shards, for TorchRL replay buffers.

    It derives from TorchRL's ``TensorStorage`` (a ``Storage``) only so that
    replay buffers pick their TensorDict collate without extra arguments;
    every property ``TensorStorage`` computes from an in-memory tensor is
    redefined here from the shards.

    ``get`` accepts an int (negative counts from the end), a slice or range,
    a list, a numpy array or an integer tensor of any shape (the result's
    batch shape is the index shape) and returns a TensorDict with the stored
    columns plus the ``("next", key)`` values rebuilt from the following row
    of the same episode (or the episode's final value, or zeros).

    Args:
        root: dataset directory written by :class:`torchrl_ext.ShardWriter`.
        device: device of the returned tensors (data is read on the CPU).
        cache_bytes: small columns (at most 64 bytes per row: actions, rewards,
            flags, ids) are copied into one in-RAM array each while their total
            stays within this budget, so a batch reads them with one gather
            instead of one per shard. ``0`` keeps everything memory-mapped.

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

    def __init__(self, root: str | os.PathLike, *, device: torch.device | str = "cpu",
                 cache_bytes: int = 128 << 20) -> None:
        if not isinstance(cache_bytes, int) or cache_bytes < 0:
            raise ValueError(f"`cache_bytes` must be an int >= 0, got {cache_bytes!r}")
        self.root = Path(root)
        self.device = torch.device(device)
        self.cache_bytes = cache_bytes
        self._open()
        Storage.__init__(self, max_size=self._rows)

    # ------------------------------------------------------------------ opening
    def _open(self) -> None:
        manifest = read_manifest(self.root)
        validate_shards(self.root, manifest)
        self._manifest = manifest
        self._rows = manifest.num_rows
        self._columns: list[Column] = [c for c in manifest.schema]
        self._next_keys: list[Key] = list(manifest.next_from_row)
        self._maps: dict[Key, list[np.ndarray]] = {c.key: [] for c in self._columns}
        self._final_maps: dict[Key, list[np.ndarray]] = {k: [] for k in self._next_keys}
        self._final_rows_parts: list[np.ndarray] = []
        self._shard_dirs: list[str] = []
        self._add_shards(manifest)
        self._load_episodes(manifest)

    def _add_shards(self, manifest: Manifest) -> None:
        known = len(self._shard_dirs)
        if manifest.shards[:known] != self._shards_seen():
            # A resumed writer replaced a tail shard: reopen everything.
            self._maps = {c.key: [] for c in self._columns}
            self._final_maps = {k: [] for k in self._next_keys}
            self._final_rows_parts, self._shard_dirs, known = [], [], 0
        offset = sum(s.rows for s in manifest.shards[:known])
        for shard in manifest.shards[known:]:
            d = self.root / shard.dir
            for col in self._columns:
                self._maps[col.key].append(self._memmap(column_path(d, col.key), col, shard.rows))
            if self._next_keys:
                if shard.finals:
                    rows = self._memmap(column_path(d / "final", ("row",)),
                                        Column(("row",), np.dtype(np.int64), ()), shard.finals)
                    self._final_rows_parts.append(np.asarray(rows) + offset)
                    for key in self._next_keys:
                        col = manifest.column(key)
                        self._final_maps[key].append(
                            self._memmap(column_path(d / "final", key), col, shard.finals))
                else:
                    self._final_rows_parts.append(np.zeros(0, np.int64))
                    for key in self._next_keys:
                        self._final_maps[key].append(np.zeros((0, *manifest.column(key).shape),
                                                              manifest.column(key).dtype))
            self._shard_dirs.append(shard.dir)
            offset += shard.rows
        self._shard_infos = list(manifest.shards)
        sizes = np.asarray([s.rows for s in manifest.shards], dtype=np.int64)
        self._offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        self._cache_small_columns()
        if self._next_keys:
            fsizes = np.asarray([s.finals for s in manifest.shards], dtype=np.int64)
            self._final_offsets = np.concatenate(([0], np.cumsum(fsizes))).astype(np.int64)
            self._final_rows = (np.concatenate(self._final_rows_parts)
                                if self._final_rows_parts else np.zeros(0, np.int64))

    def _cache_small_columns(self) -> None:
        """Concatenates small columns into RAM (one array each) within ``cache_bytes``."""
        self._cached: dict[Key, np.ndarray] = {}
        rows = int(self._offsets[-1])
        budget = self.cache_bytes
        for col in sorted(self._columns, key=lambda c: c.row_bytes):
            need = rows * col.row_bytes
            if col.row_bytes > 64 or col.key in self._next_keys or need > budget:
                continue
            self._cached[col.key] = (np.concatenate(self._maps[col.key]) if self._maps[col.key]
                                     else np.zeros((0, *col.shape), col.dtype))
            budget -= need
        self._episodes_tensor = None

    @property
    def episodes(self) -> torch.Tensor:
        """Episode id of every row (int64 ``[len]``), e.g. ``SliceSampler(trajectories=storage.episodes)``."""
        if self._episodes_tensor is None or self._episodes_tensor.shape[0] != self._rows:
            ids = np.repeat(np.arange(self._ep_len.shape[0], dtype=np.int64), self._ep_len)
            self._episodes_tensor = torch.from_numpy(ids)
        return self._episodes_tensor

    def _shards_seen(self):
        return getattr(self, "_shard_infos", [])[: len(self._shard_dirs)]

    @staticmethod
    def _memmap(path: Path, col: Column, rows: int) -> np.ndarray:
        if rows == 0 or col.row_bytes == 0:
            return np.zeros((rows, *col.shape), dtype=col.dtype)
        # A plain ndarray view: np.memmap's subclass hooks cost ~25 us per indexing call.
        return np.memmap(path, dtype=col.dtype, mode="r", shape=(rows, *col.shape)).view(np.ndarray)

    def _load_episodes(self, manifest: Manifest) -> None:
        table = EpisodeTable.open(self.root / manifest.episodes)
        try:
            self._ep_first, self._ep_len, _ = table.bounds(manifest.num_episodes)
        finally:
            table.close()
        self._ep_last = self._ep_first + self._ep_len - 1
        if manifest.num_episodes and int(self._ep_last[-1]) + 1 != manifest.num_rows:
            raise FormatError(
                f"{self.root}: episodes end at row {int(self._ep_last[-1]) + 1}, the manifest "
                f"says num_rows={manifest.num_rows}; the episode table does not match"
            )

    def refresh(self) -> int:
        """Picks up shards committed since opening; returns the number of new rows."""
        before = self._rows
        manifest = read_manifest(self.root)
        validate_shards(self.root, manifest)
        if [c.to_json() for c in manifest.schema] != [c.to_json() for c in self._columns]:
            raise FormatError(f"{self.root}: schema changed since the storage was opened; reopen it")
        self._manifest = manifest
        self._add_shards(manifest)
        self._load_episodes(manifest)
        self._rows = manifest.num_rows
        self.max_size = self._rows
        self._bump_mutation_revision()
        return self._rows - before

    # ------------------------------------------------------------------ properties
    @property
    def manifest(self) -> Manifest:
        return self._manifest

    @property
    def num_shards(self) -> int:
        return len(self._shard_infos)

    @property
    def num_episodes(self) -> int:
        return int(self._ep_first.shape[0])

    @property
    def episode_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(first_row, length)`` arrays of every episode (read-only views)."""
        return self._ep_first, self._ep_len

    def episode_table(self) -> EpisodeTable:
        """Opens the episode table read-only (SQL metadata filters)."""
        return EpisodeTable.open(self.root / self._manifest.episodes)

    def select_episodes(self, where: str | None, params: tuple = ()) -> np.ndarray | None:
        """Ids of the visible episodes matching an SQL ``WHERE`` clause (None: no filter)."""
        if not where:
            return None
        table = self.episode_table()
        try:
            return table.select(where, params, num_episodes=self.num_episodes)
        finally:
            table.close()

    def __len__(self) -> int:
        return self._rows

    # TensorStorage's derived properties, answered from the shards.
    @property
    def _len(self) -> int:
        return self._rows

    @property
    def _total_shape(self) -> torch.Size:
        return torch.Size([self._rows])

    shape = _total_shape

    @property
    def _len_along_dim0(self) -> int:
        return self._rows

    @property
    def _is_full(self) -> bool:
        return True

    @property
    def _storage_keys(self) -> list[Key]:
        return [c.key for c in self._columns] + [("next", *k) for k in self._next_keys]

    def _max_size_along_dim0(self, *, single_data=None, batched_data=None) -> int:
        return self._rows

    def _rand_given_ndim(self, batch_size: int) -> torch.Tensor:
        if self._rows == 0:
            raise RuntimeError(f"{self.root}: the dataset has no rows to sample")
        return torch.randint(0, self._rows, (batch_size,), generator=self._rng)

    def flatten(self) -> ShardedStorage:
        return self

    # ------------------------------------------------------------------ reading
    def _index_array(self, index: Any) -> np.ndarray:
        n = self._rows
        if isinstance(index, tuple):
            if len(index) != 1:
                raise IndexError(f"ShardedStorage is 1-D; expected one index, got a tuple of {len(index)}")
            index = index[0]
        if isinstance(index, slice):
            return np.arange(*index.indices(n), dtype=np.int64)
        if isinstance(index, range):
            idx = np.asarray(index, dtype=np.int64)
        elif isinstance(index, torch.Tensor):
            idx = index.detach().cpu().numpy()
        else:
            idx = np.asarray(index)
        if idx.dtype == np.bool_:
            if idx.shape != (n,):
                raise IndexError(f"a boolean index must have shape ({n},), got {idx.shape}")
            return np.flatnonzero(idx)
        if idx.size == 0:
            return idx.astype(np.int64)
        if not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"ShardedStorage index must be integers, got dtype {idx.dtype}")
        idx = idx.astype(np.int64, copy=True)
        neg = idx < 0
        if neg.any():
            idx[neg] += n
        if idx.min() < 0 or idx.max() >= n:
            bad = np.asarray(index)[(idx < 0) | (idx >= n)].ravel()[0]
            raise IndexError(f"index {int(bad)} is out of range for a storage of {n} rows (valid: [-{n}, {n}))")
        return idx

    def get(self, index: Any) -> TensorDict:
        idx = self._index_array(index)
        shape = idx.shape
        flat = idx.reshape(-1)
        b = flat.shape[0]
        out: dict[Key, torch.Tensor] = {}
        if self._next_keys:
            e = np.searchsorted(self._ep_first, flat, side="right") - 1
            last = flat == self._ep_last[e]
            both = np.concatenate((flat, np.where(last, flat, flat + 1)))
            r2 = route(self._offsets, both)
        r = route(self._offsets, flat) if len(self._cached) + len(self._next_keys) < len(self._columns) else None
        for col in self._columns:
            if col.key in self._next_keys:
                buf = np.empty((2 * b, *col.shape), dtype=col.dtype)
                gather(self._maps[col.key], r2, buf)
                out[col.key] = torch.from_numpy(buf[:b].reshape(shape + col.shape))
                nxt = buf[b:]
                if last.any():
                    self._fill_last(col, flat, last, nxt)
                out[("next", *col.key)] = torch.from_numpy(nxt.reshape(shape + col.shape))
            elif col.key in self._cached:
                out[col.key] = torch.from_numpy(np.asarray(np.take(self._cached[col.key], idx, axis=0)))
            else:
                buf = np.empty((b, *col.shape), dtype=col.dtype)
                gather(self._maps[col.key], r, buf)
                out[col.key] = torch.from_numpy(buf.reshape(shape + col.shape))
        td = _to_td(out, shape)
        if self.device.type != "cpu":
            td = td.to(self.device, non_blocking=True)
        return td

    def _fill_last(self, col: Column, flat: np.ndarray, last: np.ndarray, nxt: np.ndarray) -> None:
        """Next value at an episode's last step: its stored final value, else zeros."""
        pos = np.flatnonzero(last)
        rows = flat[pos]
        has = np.zeros(rows.shape, dtype=bool)
        f = np.searchsorted(self._final_rows, rows)
        if self._final_rows.size:
            has = self._final_rows[np.minimum(f, self._final_rows.size - 1)] == rows
        nxt[pos[~has]] = 0
        if has.any():
            fr = route(self._final_offsets, f[has])
            vals = np.empty((int(has.sum()), *col.shape), dtype=col.dtype)
            gather(self._final_maps[col.key], fr, vals)
            nxt[pos[has]] = vals

    def set(self, cursor: Any, data: Any, *, set_cursor: bool = True):
        raise RuntimeError(_READ_ONLY)

    def _empty(self):
        raise RuntimeError(_READ_ONLY)

    def contains(self, item: Any) -> bool:
        if isinstance(item, int):
            return -self._rows <= item < self._rows
        raise NotImplementedError(f"contains() takes an int, got {type(item).__name__}")

    def verify(self) -> None:
        """Recomputes every shard's checksum; raises FormatError on a mismatch."""
        for shard in self._shard_infos:
            crcs = []
            for col in self._columns:
                crc = 0
                with open(column_path(self.root / shard.dir, col.key), "rb") as f:
                    while chunk := f.read(16 << 20):
                        crc = zlib.crc32(chunk, crc)
                crcs.append(crc)
            found = f"crc32:{zlib.crc32(struct.pack(f'>{len(crcs)}I', *crcs)):08x}"
            if found != shard.checksum:
                raise FormatError(
                    f"{self.root / shard.dir}: checksum {found} does not match the manifest's "
                    f"{shard.checksum}; the shard is corrupt, rewrite it from its source"
                )

    # ------------------------------------------------------------------ state and pickling
    def state_dict(self) -> dict[str, Any]:
        return {"root": str(self.root), "num_rows": self._rows, "num_shards": self.num_shards}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        root = Path(state_dict["root"])
        if root != self.root:
            self.root = root
            self._open()
        elif state_dict["num_rows"] > self._rows:
            self.refresh()
        if state_dict["num_rows"] > self._rows:
            raise ValueError(
                f"state_dict expects {state_dict['num_rows']} rows, {self.root} holds {self._rows}"
            )
        self._rows = state_dict["num_rows"]
        self.max_size = self._rows

    def __getstate__(self) -> dict[str, Any]:
        state = Storage.__getstate__(self)
        for k in ("_maps", "_final_maps", "_final_rows_parts", "_shard_dirs", "_shard_infos",
                  "_offsets", "_final_offsets", "_final_rows", "_ep_first", "_ep_len", "_ep_last",
                  "_manifest", "_columns", "_next_keys", "_cached", "_episodes_tensor"):
            state.pop(k, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        Storage.__setstate__(self, state)
        n = self._rows
        self._open()
        self._rows = min(n, self._rows)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, rows={self._rows}, "
                f"shards={self.num_shards}, episodes={self.num_episodes})")


def _to_td(flat: dict[Key, torch.Tensor], shape: tuple[int, ...]) -> TensorDict:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        d = nested
        for k in key[:-1]:
            d = d.setdefault(k, {})
        d[key[-1]] = value
    return TensorDict(nested, batch_size=shape)
