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

__all__ = ["ChunkStats", "ChunkedColumnWriter"]

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


class ChunkedColumnWriter:
    """Appends rows of one column of one shard, encoding them a chunk at a time.

    Both files are created exclusively (an existing file is an error). Rows are
    buffered until a chunk is full; :meth:`close` encodes the partial last chunk,
    writes the index, fsyncs both files and their directory.

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
                self._fill = 0
        while n - i >= cr:
            self._write_chunk(rows[i : i + cr])
            i += cr
        if i < n:
            self._buffer[: n - i] = rows[i:]
            self._fill = n - i
        self._rows += n

    def _write_chunk(self, rows: np.ndarray) -> None:
        payload = self.codec.encode(rows)
        self._chunks.write(payload)
        self._offsets.append(self._offsets[-1] + len(payload))
        self._crcs.append(zlib.crc32(payload))
        self._crc = zlib.crc32(payload, self._crc)

    def close(self) -> ChunkStats:
        """Encodes the last partial chunk, writes the index, fsyncs and returns what was written."""
        if self._closed:
            raise ValueError(f"{self.chunks_path}: the writer is already closed")
        if self._fill:
            self._write_chunk(self._buffer[: self._fill])
            self._fill = 0
        index = ChunkIndex(
            codec=self.options.codec_tag,
            rows=self._rows,
            row_bytes=self.row_bytes,
            chunk_rows=self.chunk_rows,
            offsets=np.asarray(self._offsets, dtype=np.int64),
            crcs=np.asarray(self._crcs, dtype=np.uint32),
        ).to_bytes()
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
