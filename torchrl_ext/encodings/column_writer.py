"""Writes one encoded column of one shard: the ``.chunks`` / ``.index`` pair of :mod:`.chunk_format`."""

from __future__ import annotations

import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..format import fsync_dir
from .chunk_format import ChunkIndex, chunk_file_paths
from .options import EncodingOptions, Raw, load_codec, resolve_encoding

__all__ = ["ChunkStats", "ChunkedColumnWriter", "EncodedChunks"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChunkStats:
    """What :meth:`ChunkedColumnWriter.close` wrote.

    Attributes:
        rows: rows written.
        chunks: chunks written.
        raw_bytes: bytes of the rows as a raw column (``rows * row_bytes``).
        bytes: bytes of the ``.chunks`` and ``.index`` files together.
        crc32: crc32 of the ``.chunks`` bytes followed by the ``.index`` bytes.
    """

    rows: int
    chunks: int
    raw_bytes: int
    bytes: int
    crc32: int

    @property
    def ratio(self) -> float:
        """``raw_bytes / bytes``: how many times smaller than the raw column."""
        return self.raw_bytes / self.bytes if self.bytes else float("inf")


@dataclass(frozen=True)
class EncodedChunks:
    """Rows of one column as chunks already encoded in a codec's payload format.

    Lets a source whose frames are already coded (e.g. one closed GOP per
    chunk) hand them to the writer without decoding: ``payloads[i]`` holds
    ``rows[i]`` rows of per-row ``shape`` and ``dtype``, coded by ``codec``
    (the chunk codec tag, e.g. ``"h264"``). Slicing by rows returns the chunks
    of that row range; the range must start and end on chunk boundaries.

    >>> c = EncodedChunks((b"a", b"b", b"c"), (4, 4, 2), "uint8", (2, 2, 3), "h264")
    >>> len(c), c[4:10].payloads
    (10, (b'b', b'c'))
    >>> c[2:8]
    Traceback (most recent call last):
    ...
    ValueError: rows [2, 8) do not start and end on chunk boundaries of chunks of (4, 4, 2) rows
    """

    payloads: tuple[bytes, ...]
    rows: tuple[int, ...]
    dtype: np.dtype | str
    shape: tuple[int, ...]
    codec: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "payloads", tuple(self.payloads))
        object.__setattr__(self, "rows", tuple(int(r) for r in self.rows))
        object.__setattr__(self, "dtype", np.dtype(self.dtype))
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if len(self.payloads) != len(self.rows) or any(r < 1 for r in self.rows):
            raise ValueError(
                f"`rows` must give a positive row count for each of the {len(self.payloads)} payloads, "
                f"got {self.rows}"
            )
        if not all(isinstance(p, (bytes, bytearray, memoryview)) for p in self.payloads):
            raise TypeError("`payloads` must be bytes-like chunk payloads")

    def __len__(self) -> int:
        return sum(self.rows)

    def __getitem__(self, index: slice) -> EncodedChunks:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError(f"EncodedChunks takes a row slice with step 1, got {index!r}")
        start, stop, _ = index.indices(len(self))
        bounds = np.concatenate(([0], np.cumsum(self.rows, dtype=np.int64)))
        a, b = np.searchsorted(bounds, [start, max(start, stop)])
        if bounds[min(a, len(bounds) - 1)] != start or bounds[min(b, len(bounds) - 1)] != max(start, stop):
            raise ValueError(
                f"rows [{start}, {stop}) do not start and end on chunk boundaries of chunks of {self.rows} rows"
            )
        return EncodedChunks(self.payloads[a:b], self.rows[a:b], self.dtype, self.shape, self.codec)


class ChunkedColumnWriter:
    """Appends rows of one column of one shard, encoding them a chunk at a time.

    Both files are created exclusively (an existing file is an error). Rows are
    buffered until a chunk is full; :meth:`cut` ends a chunk early (so the next
    row starts a chunk, e.g. at an episode end) and :meth:`close` encodes the
    partial last chunk, writes the index, fsyncs both files and their
    directory. Chunks all full but the last make a regular grid (index version
    1); a short chunk anywhere else makes the index list each chunk's rows
    (version 2).

    Args:
        dir: the shard directory.
        key: the column's nested key.
        dtype: numpy dtype of the column.
        shape: per-row shape (``()`` for one scalar per row).
        options: an encoding spec accepted by :func:`resolve_encoding` (not ``raw``).
        dictionary: the zstd dictionary bytes when ``options`` has ``dictionary=True``.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> w = ChunkedColumnWriter(d, ("reward",), "float32", (), "zstd")
    >>> w.append(np.arange(40, dtype=np.float32))
    >>> stats = w.close()
    >>> stats.rows, stats.chunks, stats.raw_bytes
    (40, 3, 160)
    >>> import shutil; shutil.rmtree(d)
    """

    def __init__(
        self,
        dir: str | os.PathLike,
        key: tuple[str, ...],
        dtype: np.dtype | str,
        shape: tuple[int, ...],
        options: EncodingOptions | str | dict[str, Any],
        dictionary: bytes | None = None,
    ) -> None:
        self.options = resolve_encoding(options)
        if isinstance(self.options, Raw):
            raise ValueError("`options` is 'raw', which is not chunked; write a .memmap column instead")
        self.key = tuple(key)
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(s) for s in shape)
        self.codec = load_codec(self.options, self.dtype, self.shape, dictionary)
        self.chunks_path, self.index_path = chunk_file_paths(dir, self.key)
        self.chunk_rows = self.options.chunk_rows
        self.row_bytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        self.chunks_path.parent.mkdir(parents=True, exist_ok=True)
        self._chunks = open(self.chunks_path, "xb")  # noqa: SIM115 - closed in close()/abort()
        try:
            self._index = open(self.index_path, "xb")  # noqa: SIM115
        except BaseException:
            self._chunks.close()
            self.chunks_path.unlink()
            raise
        self._buffer = np.empty((self.chunk_rows, *self.shape), dtype=self.dtype)
        self._fill = 0
        self._rows = 0
        self._offsets = [0]
        self._lengths: list[int] = []
        self._crcs: list[int] = []
        self._crc = 0
        self._closed = False

    @property
    def rows(self) -> int:
        """Rows appended so far."""
        return self._rows

    def append(self, rows: np.ndarray) -> None:
        """Appends ``rows`` of shape ``[n, *shape]`` (any ``n``, including 0)."""
        if self._closed:
            raise ValueError(f"{self.chunks_path}: the writer is closed")
        rows = np.asarray(rows)
        if rows.dtype != self.dtype or rows.shape[1:] != self.shape or rows.ndim != len(self.shape) + 1:
            raise ValueError(
                f"`rows` must be an array of shape [n, *{self.shape}] and dtype {self.dtype}, "
                f"got shape {rows.shape} and dtype {rows.dtype}"
            )
        n, i, cr = len(rows), 0, self.chunk_rows
        if self._fill:
            take = min(cr - self._fill, n)
            self._buffer[self._fill : self._fill + take] = rows[:take]
            self._fill += take
            i = take
            if self._fill == cr:
                self._write_chunk(self._buffer)
        while n - i >= cr:
            self._write_chunk(rows[i : i + cr])
            i += cr
        if i < n:
            self._buffer[: n - i] = rows[i:]
            self._fill = n - i
        self._rows += n

    def cut(self) -> None:
        """Ends the chunk being filled now: rows buffered by :meth:`append` become a (short) chunk."""
        if self._closed:
            raise ValueError(f"{self.chunks_path}: the writer is closed")
        if self._fill:
            self._write_chunk(self._buffer[: self._fill])

    def append_encoded_chunk(self, payload: bytes, rows: int) -> None:
        """Appends one chunk encoded elsewhere, in this column's codec payload format, holding ``rows`` rows.

        The payload is stored as it is (not decoded; the caller vouches that
        it decodes to ``rows`` rows of this column). Rows buffered by
        :meth:`append` are first cut into a chunk of their own; ``rows`` may
        be anything in ``[1, chunk_rows]``.

        Raises:
            ValueError: when the writer is closed or ``rows`` is not in
                ``[1, chunk_rows]``.
        """
        if self._closed:
            raise ValueError(f"{self.chunks_path}: the writer is closed")
        if not isinstance(rows, (int, np.integer)) or isinstance(rows, bool) or not 1 <= rows <= self.chunk_rows:
            raise ValueError(f"`rows` must be an int in [1, {self.chunk_rows}] (the chunk size), got {rows!r}")
        self.cut()
        self._store(bytes(payload), int(rows))
        self._rows += int(rows)

    def append_encoded(self, chunks: EncodedChunks) -> None:
        """Appends every chunk of ``chunks`` with :meth:`append_encoded_chunk`, after checking they fit the column.

        Raises:
            ValueError: when the codec, dtype or row shape differ from the column's.
        """
        if not isinstance(chunks, EncodedChunks):
            raise TypeError(f"`chunks` must be EncodedChunks, got {type(chunks).__name__}")
        found = (chunks.codec, chunks.dtype, chunks.shape)
        want = (self.options.codec_tag, self.dtype, self.shape)
        if found != want:
            raise ValueError(
                f"{self.chunks_path}: encoded chunks are (codec, dtype, shape)={found}, the column is {want}; "
                "pass the rows as an array to encode them"
            )
        for payload, rows in zip(chunks.payloads, chunks.rows):
            self.append_encoded_chunk(payload, rows)

    def _write_chunk(self, rows: np.ndarray) -> None:
        self._store(self.codec.encode(rows), len(rows))
        self._fill = 0

    def _store(self, payload: bytes, rows: int) -> None:
        self._chunks.write(payload)
        self._lengths.append(rows)
        self._offsets.append(self._offsets[-1] + len(payload))
        self._crcs.append(zlib.crc32(payload))
        self._crc = zlib.crc32(payload, self._crc)

    def close(self) -> ChunkStats:
        """Encodes the last partial chunk, writes the index, fsyncs and returns what was written."""
        if self._closed:
            raise ValueError(f"{self.chunks_path}: the writer is already closed")
        self.cut()
        index = ChunkIndex.from_chunk_rows(self.options.codec_tag, self.row_bytes, self.chunk_rows,
                                           self._lengths, self._offsets, self._crcs).to_bytes()
        self._index.write(index)
        for f in (self._chunks, self._index):
            f.flush()
            os.fsync(f.fileno())
            f.close()
        fsync_dir(self.chunks_path.parent)
        self._closed = True
        stats = ChunkStats(
            rows=self._rows,
            chunks=len(self._crcs),
            raw_bytes=self._rows * self.row_bytes,
            bytes=self._offsets[-1] + len(index),
            crc32=zlib.crc32(index, self._crc),
        )
        logger.debug("%s: %d rows in %d chunks, %d bytes", self.chunks_path, stats.rows, stats.chunks, stats.bytes)
        return stats

    def abort(self) -> None:
        """Closes and deletes both files (after an error)."""
        if self._closed:
            return
        self._closed = True
        for f, path in ((self._chunks, self.chunks_path), (self._index, self.index_path)):
            f.close()
            Path(path).unlink(missing_ok=True)

    def __enter__(self) -> ChunkedColumnWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            if not self._closed:
                self.close()
        else:
            self.abort()
