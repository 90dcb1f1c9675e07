"""The chunked column file pair: the on-disk layout of an encoded column in one shard.

This docstring is the specification. A column whose raw file would be
``<shard>/<a>/<leaf>.memmap`` (:func:`torchrl_ext.format.column_path`) is
stored, when encoded, as two files in the same directory:

``<leaf>.chunks``
    The encoded chunks, concatenated with no padding, in row order. Each holds
    at most ``chunk_rows`` consecutive rows of the shard. On a *regular grid*
    (index version 1) chunk ``c`` holds rows ``c * chunk_rows ..
    min((c + 1) * chunk_rows, rows) - 1`` (only the last chunk may be
    partial); otherwise (index version 2) the index lists where each chunk
    starts, so chunks coded elsewhere (one per episode end, say) are stored as
    they are. Chunks never straddle shards; a chunk may hold rows of several
    episodes. The payload of a chunk is defined by
    its codec (``zstd``: one zstandard frame with content size and checksum of
    the rows' C-order bytes; ``h264``/``av1``: see
    :mod:`torchrl_ext.encodings.video_codec`).
``<leaf>.index``
    A small little-endian binary file::

        offset  size       field
        0       6          magic b"\\x93CHIDX"
        6       1          major version, currently 1; readers refuse others
        7       1          minor version, currently 0; readers ignore it
        8       8          codec tag, ASCII, NUL-padded: "zstd", "h264" or "av1"
        16      8          uint64 rows: rows of the shard in this column
        24      8          uint64 row_bytes: bytes of one decoded row
        32      4          uint32 chunk_rows
        36      4          uint32 n_chunks, equal to ceil(rows / chunk_rows)
        40      8*(n+1)    int64 offsets: chunk c is bytes offsets[c]:offsets[c+1]
                           of the .chunks file; offsets[0] == 0, non-decreasing,
                           offsets[n] == size of the .chunks file
        ...     4*n        uint32 crc32 (zlib) of each chunk's bytes
        ...     4          uint32 crc32 of all preceding bytes of the index

    The index file is ``52 + 12 * n_chunks`` bytes.

    Version 2 (written only when the grid is not regular) has the same
    header with major version 2, ``chunk_rows`` the most rows any chunk holds
    and ``n_chunks`` between ``ceil(rows / chunk_rows)`` and ``rows``; after
    the offsets come ``8 * (n + 1)`` bytes of int64 ``row_starts``: chunk
    ``c`` holds rows ``row_starts[c]:row_starts[c + 1]``, with
    ``row_starts[0] == 0``, ``row_starts[n] == rows`` and every chunk holding
    ``1 .. chunk_rows`` rows. It is ``60 + 20 * n_chunks`` bytes. Readers of
    version 1 only refuse it by its major version.

Readers check the whole index when they open a column. A zstd chunk read in a
batch is checked by its frame header (magic number, content checksum flag,
content size equal to its rows) and by zstd's content checksum as it decodes;
any other chunk, and any chunk of a batch that fails, by its crc32 before it
is decoded. So a damaged byte anywhere raises
:class:`torchrl_ext.format.FormatError` instead of returning wrong rows.

The column's checksum (for the shard's checksum) is the crc32 of the bytes of
the ``.chunks`` file followed by those of the ``.index`` file.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..format import FormatError

__all__ = [
    "INDEX_MAGIC",
    "INDEX_VERSION",
    "IRREGULAR_VERSION",
    "ChunkIndex",
    "chunk_file_paths",
    "index_size",
]

INDEX_MAGIC = b"\x93CHIDX"
INDEX_VERSION = (1, 0)  # regular grid; (2, 0) lists each chunk's first row
IRREGULAR_VERSION = (2, 0)
_HEADER = struct.Struct("<6sBB8sQQII")
HEADER_SIZE = _HEADER.size  # 40
_MAX_CHUNKS = (1 << 32) - 1


def chunk_file_paths(shard_dir: str | Path, key: tuple[str, ...]) -> tuple[Path, Path]:
    """Paths of a column's ``(.chunks, .index)`` files inside a shard directory.

    >>> [p.as_posix() for p in chunk_file_paths("shards/000000", ("next", "pixels"))]
    ['shards/000000/next/pixels.chunks', 'shards/000000/next/pixels.index']
    """
    if not key or not all(isinstance(k, str) and k and "/" not in k and k not in (".", "..") for k in key):
        raise ValueError(f"`key` must be a non-empty tuple of plain names, got {key!r}")
    base = Path(shard_dir).joinpath(*key[:-1])
    return base / f"{key[-1]}.chunks", base / f"{key[-1]}.index"


def index_size(n_chunks: int, irregular: bool = False) -> int:
    """Size in bytes of an index file for ``n_chunks`` chunks (version 2 when ``irregular``)."""
    return HEADER_SIZE + 8 * (n_chunks + 1) * (2 if irregular else 1) + 4 * n_chunks + 4


@dataclass(frozen=True)
class ChunkIndex:
    """The parsed ``.index`` file of one column in one shard.

    ``row_starts`` is None on a regular grid (version 1), else the int64
    ``[n_chunks + 1]`` first row of each chunk followed by ``rows`` (version 2).

    >>> i = ChunkIndex("zstd", 10, 4, 4, np.array([0, 5, 9, 12]), np.zeros(3, np.uint32), np.array([0, 4, 6, 10]))
    >>> i.locate(np.array([0, 5, 9]))
    (array([0, 1, 2]), array([0, 1, 3]))
    >>> [i.chunk_len(c) for c in range(3)], i.chunk_start(2)
    ([4, 2, 4], 6)
    >>> ChunkIndex.from_bytes(i.to_bytes(), "x").row_starts.tolist()
    [0, 4, 6, 10]
    """

    codec: str
    rows: int
    row_bytes: int
    chunk_rows: int
    offsets: np.ndarray  # int64 [n_chunks + 1]
    crcs: np.ndarray  # uint32 [n_chunks]
    row_starts: np.ndarray | None = None  # int64 [n_chunks + 1], None on a regular grid

    @property
    def n_chunks(self) -> int:
        return len(self.crcs)

    def chunk_start(self, chunk: int) -> int:
        """First row of chunk ``chunk``."""
        if self.row_starts is None:
            return chunk * self.chunk_rows
        return int(self.row_starts[chunk])

    def chunk_len(self, chunk: int) -> int:
        """Rows in chunk ``chunk``."""
        if self.row_starts is None:
            return min(self.chunk_rows, self.rows - chunk * self.chunk_rows)
        return int(self.row_starts[chunk + 1] - self.row_starts[chunk])

    def locate(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(chunk, row within the chunk)`` of each of ``rows`` (int64 arrays, rows in ``[0, rows)``)."""
        if self.row_starts is None:
            chunk = rows // self.chunk_rows
            return chunk, rows - chunk * self.chunk_rows
        chunk = np.searchsorted(self.row_starts, rows, side="right") - 1
        return chunk, rows - self.row_starts[chunk]

    def chunk_of(self, row: int) -> int:
        """The chunk holding row ``row``."""
        if self.row_starts is None:
            return row // self.chunk_rows
        return int(np.searchsorted(self.row_starts, row, side="right")) - 1

    @classmethod
    def from_chunk_rows(cls, codec: str, row_bytes: int, chunk_rows: int, lengths: list[int],
                        offsets: np.ndarray, crcs: np.ndarray) -> ChunkIndex:
        """The index of chunks of ``lengths`` rows: version 1 when they form a regular grid, else version 2."""
        rows = int(sum(lengths))
        regular = all(n == chunk_rows for n in lengths[:-1]) and (not lengths or 1 <= lengths[-1] <= chunk_rows)
        starts = None if regular else np.concatenate(([0], np.cumsum(lengths, dtype=np.int64)))
        return cls(codec, rows, row_bytes, chunk_rows, np.asarray(offsets, np.int64), np.asarray(crcs, np.uint32),
                   starts)

    def to_bytes(self) -> bytes:
        n = self.n_chunks
        irregular = self.row_starts is not None
        if n > _MAX_CHUNKS or (not irregular and n != math.ceil(self.rows / self.chunk_rows)):
            raise ValueError(f"{n} chunks do not hold {self.rows} rows of {self.chunk_rows} per chunk")
        if irregular:
            lengths = np.diff(self.row_starts)
            if (len(self.row_starts) != n + 1 or self.row_starts[0] != 0 or self.row_starts[-1] != self.rows
                    or (n and not (1 <= lengths.min() and lengths.max() <= self.chunk_rows))):
                raise ValueError(f"`row_starts` {self.row_starts} do not split {self.rows} rows into chunks "
                                 f"of 1..{self.chunk_rows} rows")
        tag = self.codec.encode("ascii")
        if len(tag) > 8:
            raise ValueError(f"codec tag {self.codec!r} is longer than 8 bytes")
        version = IRREGULAR_VERSION if irregular else INDEX_VERSION
        body = (
            _HEADER.pack(INDEX_MAGIC, *version, tag, self.rows, self.row_bytes, self.chunk_rows, n)
            + np.asarray(self.offsets, dtype="<i8").tobytes()
            + (np.asarray(self.row_starts, dtype="<i8").tobytes() if irregular else b"")
            + np.asarray(self.crcs, dtype="<u4").tobytes()
        )
        return body + struct.pack("<I", zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> ChunkIndex:
        """Parses and checks an index file's bytes (version 1 or 2); ``where`` names the file in errors.

        Raises:
            FormatError: for a bad magic, an unknown major version, a wrong size, a
                checksum mismatch or inconsistent offsets or row starts.
        """
        fix = "re-write the shard or verify it against its source"
        if len(data) < HEADER_SIZE:
            raise FormatError(
                f"{where}: index is truncated: expected at least {HEADER_SIZE} bytes, found "
                f"{len(data)}; {fix}"
            )
        magic, major, _minor, tag, rows, row_bytes, chunk_rows, n = _HEADER.unpack_from(data)
        if magic != INDEX_MAGIC:
            raise FormatError(
                f"{where}: the magic string is not correct; expected {INDEX_MAGIC!r}, got {magic!r}; {fix}"
            )
        if major not in (INDEX_VERSION[0], IRREGULAR_VERSION[0]):
            raise FormatError(
                f"{where}: index version {major} is not supported, this reader knows "
                f"{INDEX_VERSION[0]} and {IRREGULAR_VERSION[0]}; upgrade torchrl-ext"
            )
        irregular = major == IRREGULAR_VERSION[0]
        expected = index_size(n, irregular)
        if len(data) != expected:
            raise FormatError(
                f"{where}: index of {n} chunks must be {expected} bytes, found {len(data)}; "
                f"the file is truncated or corrupt; {fix}"
            )
        (stored_crc,) = struct.unpack_from("<I", data, expected - 4)
        found_crc = zlib.crc32(memoryview(data)[: expected - 4])
        if stored_crc != found_crc:
            raise FormatError(
                f"{where}: index crc32 mismatch (stored {stored_crc:08x}, computed {found_crc:08x}); {fix}"
            )
        fewest = math.ceil(rows / chunk_rows) if chunk_rows else -1
        if chunk_rows < 1 or not (n == fewest or (irregular and fewest <= n <= rows)):
            raise FormatError(
                f"{where}: index lists {n} chunks of {'up to ' if irregular else ''}{chunk_rows} rows for "
                f"{rows} rows; {fix}"
            )
        offsets = np.frombuffer(data, dtype="<i8", count=n + 1, offset=HEADER_SIZE).astype(np.int64)
        pos = HEADER_SIZE + 8 * (n + 1)
        starts = None
        if irregular:
            starts = np.frombuffer(data, dtype="<i8", count=n + 1, offset=pos).astype(np.int64)
            pos += 8 * (n + 1)
            lengths = np.diff(starts)
            if starts[0] != 0 or starts[-1] != rows or (n and not (lengths.min() >= 1 and lengths.max() <= chunk_rows)):
                raise FormatError(
                    f"{where}: chunk row starts must go from 0 to {rows} in steps of 1..{chunk_rows} rows; {fix}"
                )
        crcs = np.frombuffer(data, dtype="<u4", count=n, offset=pos).astype(np.uint32)
        if offsets[0] != 0 or (n and bool((np.diff(offsets) < 0).any())):
            raise FormatError(f"{where}: chunk offsets do not start at 0 and never decrease; {fix}")
        return cls(tag.rstrip(b"\0").decode("ascii", "replace"), rows, row_bytes, chunk_rows, offsets, crcs, starts)
