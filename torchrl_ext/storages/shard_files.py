"""Opening the committed shards of a dataset for reading: one source per column and shard.

A source is a raw column's memory map or an encoded column's chunk reader;
every file is opened through :func:`~torchrl_ext.format.open_inside` (inside
the root, a regular file), whatever ``verify`` says.
Shards committed later are opened by :meth:`ShardFiles.extend`; when a
resumed writer replaced a tail shard, everything is reopened. Small raw
columns are then copied into one in-RAM array each, within a byte budget.
The ``final/`` files of each shard go to :class:`~.next_values.FinalValues`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..format import (
    Column,
    Key,
    Manifest,
    ShardInfo,
    column_path,
    final_columns,
    load_dictionaries,
    open_column,
    resolved_root,
)
from .next_values import FinalValues

if TYPE_CHECKING:
    from ..encodings import DecodedChunkCache

__all__ = ["SMALL_ROW_BYTES", "ShardFiles", "ensure_open_files"]

logger = logging.getLogger(__name__)

SMALL_ROW_BYTES = 64  # raw columns of at most this many bytes per row may be kept in RAM


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


class ShardFiles:
    """The opened column files of a dataset's committed shards.

    Open with :meth:`open`. After each :meth:`extend`:

    - ``sources[key][s]`` is column ``key`` of shard ``s``;
    - ``offsets`` (int64 ``[S + 1]``) are the shards' first global rows;
    - ``cached[key]`` holds every row of a small raw column in RAM;
    - ``shards`` lists the opened shards' manifest entries;
    - ``finals`` holds the stored final values (None without ``next_keys``).

    Args:
        root: dataset directory.
        columns: the manifest's schema.
        next_keys: keys whose ``("next", K)`` is rebuilt from the following row.
        dictionaries: zstd dictionaries of the encoded columns that use one.
        decode_cache: decoded chunks shared by the encoded columns, or None.
        decode_threads: decoding threads of each encoded column (None: the encoding's default).
        cache_bytes: byte budget of the small raw columns copied into RAM.
        finals: the stored final values, or None when there are no ``next_keys``.
    """

    def __init__(self, root: Path, columns: list[Column], next_keys: list[Key], dictionaries: dict[Key, bytes],
                 decode_cache: DecodedChunkCache | None, decode_threads: int | None, cache_bytes: int,
                 finals: FinalValues | None) -> None:
        self.root = root
        self.columns = columns
        self.next_keys = next_keys
        self.dictionaries = dictionaries
        self.decode_cache = decode_cache
        self.decode_threads = decode_threads
        self.cache_bytes = cache_bytes
        self.finals = finals
        self.sources: dict[Key, list[Any]] = {c.key: [] for c in columns}
        self.shards: list[ShardInfo] = []
        self.offsets = np.zeros(1, np.int64)
        self.cached: dict[Key, np.ndarray] = {}
        self.lazy = False

    @classmethod
    def open(cls, root: Path, manifest: Manifest, *, cache_bytes: int, decode_cache_bytes: int,
             decode_threads: int | None, lazy: bool = False) -> ShardFiles:
        """Opens every shard of ``manifest`` (a validated manifest of the dataset at ``root``).

        ``decode_cache_bytes`` is the budget of the decoded chunks shared by
        the encoded columns (0: decode straight into the output). ``lazy``
        opens no shard: each is opened by :meth:`open_shard` (a remote
        dataset's shards, fetched on first touch); a closed shard's sources are None.
        """
        columns = list(manifest.schema)
        decode_cache = None
        if decode_cache_bytes and any(c.encoding != "raw" for c in columns):  # encodings load on first use
            from ..encodings import DecodedChunkCache

            decode_cache = DecodedChunkCache(decode_cache_bytes)
        next_keys = list(manifest.next_from_row)
        finals = FinalValues(next_keys, final_columns(manifest)) if next_keys else None
        files = cls(root, columns, next_keys, load_dictionaries(root, columns), decode_cache, decode_threads,
                    cache_bytes, finals)
        files.lazy = lazy
        files.extend(manifest)
        return files

    def extend(self, manifest: Manifest) -> bool:
        """Opens the shards committed since the last call; True when every shard was reopened.

        A resumed writer may replace the tail shard: then nothing opened
        before is kept.
        """
        ensure_open_files(len(manifest.shards) * (len(self.columns) + len(self.next_keys) + 1), self.root)
        known = len(self.shards)
        reopened = manifest.shards[:known] != self.shards
        if reopened:
            self.sources = {c.key: [] for c in self.columns}
            self.shards, known = [], 0
            if self.finals is not None:
                self.finals.clear()
        offset = sum(s.rows for s in manifest.shards[:known])
        root = resolved_root(self.root)  # once for every file opened now
        for shard in manifest.shards[known:]:
            if self.lazy:
                for col in self.columns:
                    self.sources[col.key].append(None)
                if self.finals is not None:
                    self.finals.add_closed()
            else:
                d = self.root / shard.dir
                for col in self.columns:
                    self.sources[col.key].append(self._open_source(root, d, col, shard.rows))
                if self.finals is not None:
                    self.finals.open_shard(root, d, shard, offset)
            self.shards.append(shard)
            offset += shard.rows
        sizes = np.asarray([s.rows for s in manifest.shards], dtype=np.int64)
        self.offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        self.cached = self._cache_small_columns()
        if self.finals is not None:
            self.finals.build_lookup()
        return reopened

    def is_open(self, s: int) -> bool:
        return not self.columns or self.sources[self.columns[0].key][s] is not None

    def open_shard(self, s: int) -> None:
        """Opens shard ``s`` of a lazy set (its files are present and verified)."""
        shard, root = self.shards[s], resolved_root(self.root)
        d = self.root / shard.dir
        for col in self.columns:
            self.sources[col.key][s] = self._open_source(root, d, col, shard.rows)
        if self.finals is not None:
            self.finals.open_shard(root, d, shard, int(self.offsets[s]), slot=s)
            self.finals.build_lookup()
        if all(self.is_open(i) for i in range(len(self.shards))):
            self.cached = self._cache_small_columns()

    def close_shard(self, s: int) -> None:
        """Unmaps shard ``s`` of a lazy set (its files may then be evicted)."""
        for col in self.columns:
            self.sources[col.key][s] = None
        if self.finals is not None:
            self.finals.close_shard(s)
            self.finals.build_lookup()
        self.cached = {}

    def _open_source(self, root: Any, d: Path, col: Column, rows: int) -> Any:
        if col.encoding == "raw":
            return open_column(column_path(d, col.key), col.dtype, col.shape, rows, root=root)
        from ..encodings import encoded_column_reader

        return encoded_column_reader(d, col, rows, self.dictionaries.get(col.key), cache=self.decode_cache,
                                     threads=self.decode_threads, root=root)

    def _cache_small_columns(self) -> dict[Key, np.ndarray]:
        """Small raw columns concatenated into RAM (one array each) within ``cache_bytes``."""
        cached: dict[Key, np.ndarray] = {}
        if any(src is None for sources in self.sources.values() for src in sources):
            return cached  # a lazy set with closed shards reads every column from its shards
        rows = int(self.offsets[-1])
        budget = self.cache_bytes
        for col in sorted(self.columns, key=lambda c: c.row_bytes):
            need = rows * col.row_bytes
            if (col.row_bytes > SMALL_ROW_BYTES or col.encoding != "raw" or col.key in self.next_keys
                    or need > budget):
                continue
            parts = self.sources[col.key]
            cached[col.key] = np.concatenate(parts) if parts else np.zeros((0, *col.shape), col.dtype)
            budget -= need
        return cached
