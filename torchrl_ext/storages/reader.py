"""``ShardReader``: global rows of a sharded dataset as numpy arrays; no TorchRL, no torch.

It routes a batch of global rows to shards with one ``searchsorted`` and
gathers each column from the sources opened by :mod:`.shard_files` (raw
memmaps: one ``take`` per touched shard; small columns kept in RAM: one
``take``; a zstd column: one decompression call for every shard the batch
touches, :mod:`torchrl_ext.encodings.batch_decode`; video: each touched
chunk once). The ``("next", K)`` values of keys stored once are
rebuilt here: the following row inside the episode, else the episode's stored
final value at its last step (:mod:`.next_values`), or zeros. Checksums are
checked by :mod:`.integrity`. ``ShardedStorage`` is the TorchRL adapter over it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import numpy as np

from ..format import (
    Column,
    EpisodeTable,
    FormatError,
    Key,
    Manifest,
    read_manifest,
    validate_shards,
    verify_shard,
)
from ..remote.dataset import RemoteDataset
from ..remote.roots import dataset_root
from ..validation import nonnegative_int, one_of, positive_int
from .batch_memory import batch_array
from .integrity import ShardChecks, check_episode_table
from .remote_shards import RemoteShards
from .routing import Route, gather, index_rows, route
from .shard_files import ShardFiles, ensure_open_files  # noqa: F401 (ensure_open_files lived here)

__all__ = ["VERIFY_MODES", "ShardReader"]

VERIFY_MODES = ("off", "first-read", "open")


class ShardReader:
    """Reads rows of a dataset written by :class:`torchrl_ext.ShardWriter`.

    Args:
        root: dataset directory, or a URL (``gs://bucket/prefix``; other schemes
            through fsspec) read through a local cache: shards are fetched,
            verified, on first touch (:mod:`torchrl_ext.remote`).
        cache_bytes: small raw columns (at most 64 bytes per row) are copied
            into one in-RAM array each while their total stays within this budget.
        verify: ``"off"``; ``"first-read"`` checks a shard's checksum (and its
            ``meta.json``) the first time a read touches it; ``"open"`` checks
            every shard when opening. Both check the episode table's content
            checksum whenever it is loaded, before its boundaries are used.
        decode_cache_bytes: byte budget of decoded chunks of encoded columns
            kept for reuse (windows and frame stacks reread neighbours).
        decode_threads: threads that decode chunks of one read in parallel (None: the
            encoding's default, 1 for zstd and 2 for video).
        cache_dir: where a remote dataset is cached (default ``~/.cache/torchrl_ext/remote``).
        disk_cache_bytes: bytes the fetched shards of a remote dataset may occupy on
            disk (None: no limit); least recently used shards nobody has open are evicted.

    Example:
        >>> import tempfile
        >>> from torchrl_ext.synthetic import write_synthetic
        >>> root = write_synthetic(tempfile.mkdtemp() + "/ds", episodes=2, length=3, obs_shape=(1,))
        >>> reader = ShardReader(root)
        >>> rows = reader.gather(np.array([0, 2]))
        >>> rows[("step",)].tolist(), rows[("next", "observation")].shape
        ([0, 2], (2, 1))
    """

    def __init__(self, root: str | os.PathLike, *, cache_bytes: int = 128 << 20, verify: str = "off",
                 decode_cache_bytes: int = 64 << 20, decode_threads: int | None = None,
                 cache_dir: str | os.PathLike | None = None, disk_cache_bytes: int | None = None) -> None:
        nonnegative_int(disk_cache_bytes, "disk_cache_bytes", allow_none=True)
        root = dataset_root(root, "root", cache_dir=cache_dir, disk_cache_bytes=disk_cache_bytes)
        nonnegative_int(cache_bytes, "cache_bytes")
        nonnegative_int(decode_cache_bytes, "decode_cache_bytes")
        positive_int(decode_threads, "decode_threads", allow_none=True)
        one_of(verify, "verify", VERIFY_MODES)
        self.root = Path(root)
        self.cache_bytes = cache_bytes
        self.verify_mode = verify
        self.decode_cache_bytes = decode_cache_bytes
        self.decode_threads = decode_threads
        self.disk_cache_bytes = disk_cache_bytes
        self._open()

    # ------------------------------------------------------------------ opening
    def _open(self) -> None:
        remote = RemoteDataset.attach(self.root, disk_cache_bytes=self.disk_cache_bytes)
        manifest = read_manifest(self.root)
        if remote is None:
            validate_shards(self.root, manifest)
        self.manifest = manifest
        self.columns: list[Column] = list(manifest.schema)
        self.next_keys: list[Key] = list(manifest.next_from_row)
        self._raw_keys = {c.key for c in self.columns if c.encoding == "raw"}
        self._checks = ShardChecks(self.root)
        self._files = ShardFiles.open(self.root, manifest, cache_bytes=self.cache_bytes,
                                      decode_cache_bytes=self.decode_cache_bytes, decode_threads=self.decode_threads,
                                      lazy=remote is not None)
        self._remote = None if remote is None else RemoteShards.for_budget(remote, self._files)
        self._bind_files()
        self._load_episodes(manifest)
        self.num_rows = manifest.num_rows
        if self.verify_mode == "open" and remote is None:  # a remote shard is verified when it is fetched
            self.verify()

    def _bind_files(self) -> None:
        """Binds what reads use to the opened files: no lookup through ``_files`` per read."""
        files = self._files
        self._sources, self._cached, self._finals = files.sources, files.cached, files.finals
        self._shards, self.offsets = files.shards, files.offsets
        self._episode_ids = None
        self._zstd_columns: dict[Key, Any] = {}

    def _load_episodes(self, manifest: Manifest) -> None:
        table = EpisodeTable.from_dataset(self.root, manifest.episodes)
        try:
            if self.verify_mode != "off":  # boundaries decide every ("next", K): checked before they are used
                check_episode_table(manifest, table)
            self.ep_first, self.ep_len, _ = table.bounds(manifest.num_episodes)
        finally:
            table.close()
        self.ep_last = self.ep_first + self.ep_len - 1
        if manifest.num_episodes and int(self.ep_last[-1]) + 1 != manifest.num_rows:
            raise FormatError(
                f"{self.root}: episodes end at row {int(self.ep_last[-1]) + 1}, the manifest "
                f"says num_rows={manifest.num_rows}; the episode table does not match"
            )

    def refresh(self) -> int:
        """Picks up shards committed since opening; returns the number of new rows."""
        before = self.num_rows
        manifest = read_manifest(self.root)
        if self._remote is None:
            validate_shards(self.root, manifest)
        if [c.to_json() for c in manifest.schema] != [c.to_json() for c in self.columns]:
            raise FormatError(f"{self.root}: schema changed since the dataset was opened; reopen it")
        self.manifest = manifest
        if self._files.extend(manifest):  # a resumed writer replaced a tail shard: all were reopened
            self._checks.forget()
        self._bind_files()
        self._load_episodes(manifest)
        self.num_rows = manifest.num_rows
        return self.num_rows - before

    # ------------------------------------------------------------------ episodes
    @property
    def num_shards(self) -> int:
        return len(self._shards)

    @property
    def num_episodes(self) -> int:
        return int(self.ep_first.shape[0])

    @property
    def episode_ids(self) -> np.ndarray:
        """Episode id of every visible row (int64 ``[num_rows]``)."""
        if self._episode_ids is None or self._episode_ids.shape[0] != self.num_rows:
            self._episode_ids = np.repeat(np.arange(self.num_episodes, dtype=np.int64), self.ep_len)
        return self._episode_ids

    def episode_table(self) -> EpisodeTable:
        """Opens the episode table read-only (SQL metadata filters)."""
        return EpisodeTable.from_dataset(self.root, self.manifest.episodes)

    def select_episodes(self, where: str | None, params: tuple = ()) -> np.ndarray | None:
        """Ids of the visible episodes matching an SQL ``WHERE`` clause (None: no filter)."""
        if not where:
            return None
        table = self.episode_table()
        try:
            return table.select(where, params, num_episodes=self.num_episodes)
        finally:
            table.close()

    # ------------------------------------------------------------------ reading
    def index_array(self, index: Any) -> np.ndarray:
        """Normalises an index (int, slice, range, sequence, bool mask, array) to int64 rows."""
        return index_rows(index, self.num_rows)

    def _gather(self, key: Key, r: Route, out: np.ndarray) -> np.ndarray:
        sources = self._sources[key]
        if key in self._raw_keys or not sources:
            return gather(sources, r, out)
        if r.single >= 0:
            sources[r.single].gather(r.local, out)
            return out
        if sources[0] is not None and sources[0].batched and None not in sources:  # one decompression call
            return self._zstd_column(key, sources).gather(r.shards, r.bounds, r.local, r.order, out)
        for g, shard in enumerate(r.shards.tolist()):
            a, b = int(r.bounds[g]), int(r.bounds[g + 1])
            part = np.empty((b - a, *out.shape[1:]), out.dtype)
            sources[shard].gather(r.local[a:b], part)
            out[r.order[a:b]] = part
        return out

    def _zstd_column(self, key: Key, sources: list[Any]) -> Any:
        """The zstd column over every opened shard of ``key`` (built again when shards were added)."""
        column = self._zstd_columns.get(key)
        if column is None or len(column.readers) != len(sources) or column.readers[0] is not sources[0]:
            from ..encodings.batch_decode import ZstdColumn

            column = self._zstd_columns[key] = ZstdColumn(list(sources))
        return column

    def gather_column(self, key: Key, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Values of one stored column at in-range global ``rows`` (int64 ``[n]``; repeats allowed, an
        encoded row is decoded once however often it is asked for), into ``out`` when given."""
        if self._remote is None:
            return self._column(key, rows, out)
        with self._remote.lock:
            if self._remote.touch(rows):
                self._cached = self._files.cached
            return self._column(key, rows, out)

    def _column(self, key: Key, rows: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        col = self.manifest.column(key)
        if out is None:
            out = np.empty((rows.shape[0], *col.shape), dtype=col.dtype)
        if key in self._cached:
            return np.take(self._cached[key], rows, axis=0, out=out, mode="clip")
        return self._gather(key, route(self.offsets, rows), out)

    def fill_final(self, key: Key, rows: np.ndarray, last: np.ndarray, nxt: np.ndarray) -> None:
        """Sets ``nxt[i]`` where ``last[i]`` (global row ``rows[i]`` ends its episode) to ``("next", key)``
        there: the episode's stored final value, else zeros. ``key`` is one of ``next_keys``."""
        self._finals.fill_last(self.manifest.column(key), rows, last, nxt)

    def gather(self, flat: np.ndarray, keys: Collection[Key] | None = None) -> dict[Key, np.ndarray]:
        """Every column (and rebuilt ``("next", K)``) at in-range global rows ``flat`` (int64 ``[n]``).

        ``keys`` (stored keys or ``("next", K)``) reads only those columns; a
        rebuilt ``("next", K)`` comes with ``K``, the column it is read from.
        """
        if self._remote is None:
            return self._gather_rows(flat, keys)
        with self._remote.lock:  # one read at a time may open and close a remote dataset's shards
            return self._gather_rows(flat, keys)

    def _gather_rows(self, flat: np.ndarray, keys: Collection[Key] | None) -> dict[Key, np.ndarray]:
        b = flat.shape[0]
        out: dict[Key, np.ndarray] = {}
        columns = self.columns
        if keys is not None:
            wanted = {tuple(k) for k in keys}
            columns = [c for c in columns if c.key in wanted or ("next", *c.key) in wanted]
        both = flat
        if any(c.key in self.next_keys for c in columns):
            e = np.searchsorted(self.ep_first, flat, side="right") - 1
            last = flat == self.ep_last[e]
            both = np.concatenate((flat, np.where(last, flat, flat + 1)))
            r2 = route(self.offsets, both)
        if self._remote is not None and self._remote.touch(both):  # the shards read, each verified when fetched
            self._cached = self._files.cached  # built once every shard is open, dropped when one closes
        elif self.verify_mode == "first-read" and flat.size:
            self._checks.check_touched(self.manifest, self._shards, self.offsets, flat)
        direct = [c for c in columns if c.key not in self._cached and c.key not in self.next_keys]
        r = route(self.offsets, flat) if direct else None
        for col in columns:
            if col.key in self.next_keys:
                buf = batch_array((2 * b, *col.shape), col.dtype)
                self._gather(col.key, r2, buf)
                out[col.key] = buf[:b]
                nxt = buf[b:]
                if last.any():
                    self._finals.fill_last(col, flat, last, nxt)
                out[("next", *col.key)] = nxt
            elif col.key in self._cached:
                out[col.key] = np.take(self._cached[col.key], flat, axis=0)
            else:
                buf = batch_array((b, *col.shape), col.dtype)
                out[col.key] = self._gather(col.key, r, buf)
        return out

    # ------------------------------------------------------------------ integrity
    def verify(self, progress: Callable[[int], None] | None = None) -> None:
        """Recomputes every checksum: each shard's files (``final/`` and encoded chunks included),
        then the event logs and the episode table's content.

        Raises:
            FormatError: naming the first corrupt shard.
        """
        if self._remote is not None:  # each shard fetched (verified) and checked again, one at a time
            for s, shard in enumerate(self._shards):
                fd = self._remote.remote.pin(s)
                try:
                    verify_shard(self.root, self.manifest, shard)
                finally:
                    self._remote.remote.unpin(fd)
                if progress is not None:
                    progress(1)
            return
        self._checks.check_all(self.manifest, self._shards, progress)

    # ------------------------------------------------------------------ remote datasets
    @property
    def is_remote(self) -> bool:
        """True when the root is the cache of a remote dataset (shards fetched on first touch)."""
        return self._remote is not None

    @property
    def remote(self) -> RemoteDataset | None:
        """The :class:`~torchrl_ext.remote.dataset.RemoteDataset` whose cache this reader reads (its shards
        fetched with ``remote.fetch(shards)``), or None for a local dataset."""
        return None if self._remote is None else self._remote.remote

    def will_need(self, shards: list[int]) -> None:
        """Fetches these shards of a remote dataset in the background (nothing for a local one)."""
        if self._remote is not None:
            self._remote.will_need(shards)

    def close(self) -> None:
        """Releases the shards of a remote dataset this reader holds (a local reader holds nothing)."""
        if self._remote is not None:
            self._remote.close()

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        return {"root": str(self.root), "cache_bytes": self.cache_bytes, "verify": self.verify_mode,
                "decode_cache_bytes": self.decode_cache_bytes, "decode_threads": self.decode_threads,
                "disk_cache_bytes": self.disk_cache_bytes, "num_rows": self.num_rows}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["root"], cache_bytes=state["cache_bytes"], verify=state["verify"],
                      decode_cache_bytes=state["decode_cache_bytes"], decode_threads=state["decode_threads"],
                      disk_cache_bytes=state.get("disk_cache_bytes"))
        self.num_rows = min(state["num_rows"], self.num_rows)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, rows={self.num_rows}, "
                f"shards={self.num_shards}, episodes={self.num_episodes})")
