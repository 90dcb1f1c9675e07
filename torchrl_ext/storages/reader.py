"""``ShardReader``: global rows of a sharded dataset as numpy arrays; no TorchRL, no torch.

It opens the shards' column files (raw memmaps, or the chunk readers of
encoded columns), keeps small columns in RAM within a byte budget, routes a
batch of global rows to shards with one ``searchsorted`` and gathers each
column once per touched shard. The ``("next", K)`` values of keys stored once
are rebuilt here: the following row inside the episode, the episode's stored
final value at its last step, or zeros. ``ShardedStorage`` is the TorchRL
adapter over it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..format import (
    FINAL_ROW,
    Column,
    FormatError,
    Key,
    Manifest,
    check_event_log,
    column_path,
    final_columns,
    load_dictionaries,
    open_column,
    read_manifest,
    resolve_inside,
    validate_shards,
    verify_shard,
)
from ..validation import nonnegative_int, one_of, path, positive_int
from ..writer import EpisodeTable
from .routing import Route, gather, index_rows, route

__all__ = ["ShardReader", "VERIFY_MODES"]

logger = logging.getLogger(__name__)

VERIFY_MODES = ("off", "first-read", "open")
_SMALL_ROW_BYTES = 64


def ensure_open_files(needed: int, where: Path) -> None:
    """Raises the soft limit of open files when the memory maps of a dataset need more.

    Every memory-mapped file holds a descriptor; a dataset of S shards and C
    columns maps about ``S * C`` files. The soft limit is raised up to the hard
    limit, like any program that needs many files; past the hard limit the
    error says what to change.
    """
    try:
        import resource
    except ImportError:  # not POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + 256  # room for everything else the process opens
    if want <= soft:
        return
    if hard != resource.RLIM_INFINITY and want > hard:
        raise OSError(
            f"{where}: reading this dataset maps about {needed} files, more than this process may open "
            f"({hard}); raise the limit (`ulimit -Hn`) or write the dataset with larger shards (shard_bytes)"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (want if hard == resource.RLIM_INFINITY else min(hard, max(want, 2 * soft)), hard))
    logger.info("raised the open-file limit from %d to %d for %s", soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0], where)


class ShardReader:
    """Reads rows of a dataset written by :class:`torchrl_ext.ShardWriter`.

    Args:
        root: dataset directory.
        cache_bytes: small raw columns (at most 64 bytes per row) are copied
            into one in-RAM array each while their total stays within this budget.
        verify: ``"off"``; ``"first-read"`` checks a shard's checksum the first
            time a read touches it; ``"open"`` checks every shard when opening.
        decode_cache_bytes: byte budget of decoded chunks of encoded columns
            kept for reuse (windows and frame stacks reread neighbours).
        decode_threads: threads that decode chunks of one read in parallel (None: the
            encoding's default, 1 for zstd and 2 for video).

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
                 decode_cache_bytes: int = 64 << 20, decode_threads: int | None = None) -> None:
        path(root, "root")
        nonnegative_int(cache_bytes, "cache_bytes")
        nonnegative_int(decode_cache_bytes, "decode_cache_bytes")
        positive_int(decode_threads, "decode_threads", allow_none=True)
        one_of(verify, "verify", VERIFY_MODES)
        self.root = Path(root)
        self.cache_bytes = cache_bytes
        self.verify_mode = verify
        self.decode_cache_bytes = decode_cache_bytes
        self.decode_threads = decode_threads
        self._open()

    # ------------------------------------------------------------------ opening
    def _open(self) -> None:
        manifest = read_manifest(self.root)
        validate_shards(self.root, manifest)
        self.manifest = manifest
        self.columns: list[Column] = list(manifest.schema)
        self.next_keys: list[Key] = list(manifest.next_from_row)
        self._decoded = None
        self._dicts = load_dictionaries(self.root, self.columns)
        if self.decode_cache_bytes and any(c.encoding != "raw" for c in self.columns):  # 0: decode into the output
            from ..encodings import DecodedChunkCache

            self._decoded = DecodedChunkCache(self.decode_cache_bytes)
        self._sources: dict[Key, list[Any]] = {c.key: [] for c in self.columns}
        self._finals: dict[Key, list[np.ndarray]] = {k: [] for k in self.next_keys}
        self._final_rows_parts: list[np.ndarray] = []
        self._shards: list = []
        self._verified: set[int] = set()
        self._verify_lock = threading.Lock()
        self._add_shards(manifest)
        self._load_episodes(manifest)
        self.num_rows = manifest.num_rows
        if self.verify_mode == "open":
            self.verify()

    def _open_source(self, d: Path, col: Column, rows: int) -> Any:
        if col.encoding == "raw":
            return open_column(column_path(d, col.key), col.dtype, col.shape, rows)
        from ..encodings import encoded_column_reader

        return encoded_column_reader(d, col, rows, self._dicts.get(col.key), cache=self._decoded,
                                     threads=self.decode_threads)

    def _add_shards(self, manifest: Manifest) -> None:
        ensure_open_files(len(manifest.shards) * (len(self.columns) + len(self.next_keys) + 1), self.root)
        known = len(self._shards)
        if manifest.shards[:known] != self._shards:
            # A resumed writer replaced a tail shard: reopen everything.
            self._sources = {c.key: [] for c in self.columns}
            self._finals = {k: [] for k in self.next_keys}
            self._final_rows_parts, self._shards, known = [], [], 0
            self._verified = set()
        offset = sum(s.rows for s in manifest.shards[:known])
        fcols = {c.key: c for c in final_columns(manifest)}
        for shard in manifest.shards[known:]:
            d = self.root / shard.dir
            for col in self.columns:
                self._sources[col.key].append(self._open_source(d, col, shard.rows))
            if self.next_keys:
                rows = open_column(column_path(d / "final", FINAL_ROW), np.dtype(np.int64), (), shard.finals)
                local = np.asarray(rows)
                if local.size and (local.min() < 0 or local.max() >= shard.rows):
                    raise FormatError(
                        f"{d / 'final'}: final rows must lie in [0, {shard.rows}), found "
                        f"[{local.min()}, {local.max()}]; the shard is corrupt, restore or rewrite it"
                    )
                self._final_rows_parts.append(local + offset)
                for key in self.next_keys:
                    c = fcols[key]
                    self._finals[key].append(open_column(column_path(d / "final", key), c.dtype, c.shape,
                                                         shard.finals))
            self._shards.append(shard)
            offset += shard.rows
        sizes = np.asarray([s.rows for s in manifest.shards], dtype=np.int64)
        self.offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        self._cache_small_columns()
        if self.next_keys:
            fsizes = np.asarray([s.finals for s in manifest.shards], dtype=np.int64)
            self._final_offsets = np.concatenate(([0], np.cumsum(fsizes))).astype(np.int64)
            self._final_rows = (np.concatenate(self._final_rows_parts)
                                if self._final_rows_parts else np.zeros(0, np.int64))

    def _cache_small_columns(self) -> None:
        """Concatenates small raw columns into RAM (one array each) within ``cache_bytes``."""
        self._cached: dict[Key, np.ndarray] = {}
        rows = int(self.offsets[-1])
        budget = self.cache_bytes
        for col in sorted(self.columns, key=lambda c: c.row_bytes):
            need = rows * col.row_bytes
            if (col.row_bytes > _SMALL_ROW_BYTES or col.encoding != "raw" or col.key in self.next_keys
                    or need > budget):
                continue
            parts = self._sources[col.key]
            self._cached[col.key] = np.concatenate(parts) if parts else np.zeros((0, *col.shape), col.dtype)
            budget -= need
        self._episode_ids = None

    def _load_episodes(self, manifest: Manifest) -> None:
        table_path = resolve_inside(self.root, manifest.episodes, str(self.root / "dataset.json"))
        table = EpisodeTable.open(table_path)
        try:
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
        validate_shards(self.root, manifest)
        if [c.to_json() for c in manifest.schema] != [c.to_json() for c in self.columns]:
            raise FormatError(f"{self.root}: schema changed since the dataset was opened; reopen it")
        self.manifest = manifest
        self._add_shards(manifest)
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
        return EpisodeTable.open(resolve_inside(self.root, self.manifest.episodes, str(self.root)))

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
        if isinstance(sources[0] if sources else None, np.ndarray) or not sources:
            return gather(sources, r, out)
        if r.single >= 0:
            sources[r.single].gather(r.local, out)
            return out
        for g, shard in enumerate(r.shards.tolist()):
            a, b = int(r.bounds[g]), int(r.bounds[g + 1])
            part = np.empty((b - a, *out.shape[1:]), out.dtype)
            sources[shard].gather(r.local[a:b], part)
            out[r.order[a:b]] = part
        return out

    def _check_first_read(self, flat: np.ndarray) -> None:
        shards = np.unique(np.searchsorted(self.offsets, flat, side="right") - 1)
        todo = [int(s) for s in shards if int(s) not in self._verified]
        if not todo:
            return
        with self._verify_lock:
            for s in todo:
                if s not in self._verified:
                    verify_shard(self.root, self.manifest, self._shards[s])
                    self._verified.add(s)

    def gather_column(self, key: Key, rows: np.ndarray) -> np.ndarray:
        """Values of one stored column at in-range global ``rows`` (int64 ``[n]``)."""
        col = self.manifest.column(key)
        out = np.empty((rows.shape[0], *col.shape), dtype=col.dtype)
        if key in self._cached:
            return np.take(self._cached[key], rows, axis=0, out=out)
        return self._gather(key, route(self.offsets, rows), out)

    def gather(self, flat: np.ndarray) -> dict[Key, np.ndarray]:
        """Every column (and rebuilt ``("next", K)``) at in-range global rows ``flat`` (int64 ``[n]``)."""
        if self.verify_mode == "first-read" and flat.size:
            self._check_first_read(flat)
        b = flat.shape[0]
        out: dict[Key, np.ndarray] = {}
        if self.next_keys:
            e = np.searchsorted(self.ep_first, flat, side="right") - 1
            last = flat == self.ep_last[e]
            r2 = route(self.offsets, np.concatenate((flat, np.where(last, flat, flat + 1))))
        direct = [c for c in self.columns if c.key not in self._cached and c.key not in self.next_keys]
        r = route(self.offsets, flat) if direct else None
        for col in self.columns:
            if col.key in self.next_keys:
                buf = np.empty((2 * b, *col.shape), dtype=col.dtype)
                self._gather(col.key, r2, buf)
                out[col.key] = buf[:b]
                nxt = buf[b:]
                if last.any():
                    self._fill_last(col, flat, last, nxt)
                out[("next", *col.key)] = nxt
            elif col.key in self._cached:
                out[col.key] = np.take(self._cached[col.key], flat, axis=0)
            else:
                buf = np.empty((b, *col.shape), dtype=col.dtype)
                out[col.key] = self._gather(col.key, r, buf)
        return out

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
            gather(self._finals[col.key], fr, vals)
            nxt[pos[has]] = vals

    # ------------------------------------------------------------------ integrity
    def verify(self, progress: Callable[[int], None] | None = None) -> None:
        """Recomputes every checksum: each shard's files (``final/`` and encoded chunks included),
        then the event logs and the episode table's content.

        Raises:
            FormatError: naming the first corrupt shard.
        """
        for i, shard in enumerate(self._shards):
            verify_shard(self.root, self.manifest, shard)
            self._verified.add(i)
            if progress is not None:
                progress(i)
        m = self.manifest
        for rel, crc in zip(m.event_logs, m.event_log_crcs):
            check_event_log(resolve_inside(self.root, rel, str(self.root / "dataset.json")), crc)
        if m.episodes_crc:
            table = self.episode_table()
            try:
                found = table.content_crc(m.num_episodes)
            finally:
                table.close()
            if found != m.episodes_crc:
                raise FormatError(
                    f"{table.path}: content checksum {found} does not match the manifest's "
                    f"{m.episodes_crc}; the episode table was edited or is corrupt, restore it from a copy"
                )

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        return {"root": str(self.root), "cache_bytes": self.cache_bytes, "verify": self.verify_mode,
                "decode_cache_bytes": self.decode_cache_bytes, "decode_threads": self.decode_threads,
                "num_rows": self.num_rows}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["root"], cache_bytes=state["cache_bytes"], verify=state["verify"],
                      decode_cache_bytes=state["decode_cache_bytes"], decode_threads=state["decode_threads"])
        self.num_rows = min(state["num_rows"], self.num_rows)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, rows={self.num_rows}, "
                f"shards={self.num_shards}, episodes={self.num_episodes})")
