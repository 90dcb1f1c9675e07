"""The files of one encoded column of one shard as bytes: the checked index, the mapped chunks.

Opening reads the ``.index`` of :mod:`.chunk_format` (its size capped before
reading) and checks it against what the manifest says of the column, then
memory-maps the ``.chunks`` file after checking its size against the index.
Both are opened through :func:`~torchrl_ext.format.open_inside`: regular files
that resolve inside the dataset root.
Nothing is decoded here: :meth:`ChunkFiles.payload` hands out one chunk's
bytes once their crc32 matches the index, and :meth:`ChunkFiles.encoded_prefix`
copies whole chunks as they are, for a resumed writer to append to a new shard.
"""

from __future__ import annotations

import math
import mmap
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..format import FormatError, open_inside
from .chunk_format import ChunkIndex, chunk_file_paths, index_size
from .column_writer import EncodedChunks
from .options import EncodingOptions

__all__ = ["REWRITE_FIX", "ChunkFiles"]

REWRITE_FIX = "re-write the shard or verify it against its source"


class ChunkFiles:
    """The ``.chunks`` / ``.index`` pair of one encoded column, opened and checked; nothing decoded.

    Open with :meth:`open`.

    Args:
        chunks_path: the ``.chunks`` file.
        index_path: the ``.index`` file.
        key: the column's nested key (named in errors).
        dtype: numpy dtype of the column.
        shape: per-row shape.
        index: the parsed index, checked against the manifest.
        data: the bytes of the ``.chunks`` file (a read-only memory map) as uint8.
        file_id: what names this version of the column for a shared cache:
            the ``.chunks`` file's device, inode, size and mtime, the dtype
            and the shape.
    """

    def __init__(self, chunks_path: Path, index_path: Path, key: tuple[str, ...], dtype: np.dtype,
                 shape: tuple[int, ...], index: ChunkIndex, data: np.ndarray, file_id: tuple[Any, ...]) -> None:
        self.chunks_path = chunks_path
        self.index_path = index_path
        self.key = key
        self.dtype = dtype
        self.shape = shape
        self.index = index
        self.data = data
        self.file_id = file_id
        self.where = f"{chunks_path} (column {key!r})"
        self.offsets: list[int] = index.offsets.tolist()
        self.crcs: list[int] = index.crcs.tolist()

    @classmethod
    def open(cls, dir: Path, key: tuple[str, ...], dtype: np.dtype, shape: tuple[int, ...],
             options: EncodingOptions, rows: int, root: str | os.PathLike | None = None) -> ChunkFiles:
        """Reads and checks the index of column ``key`` in shard ``dir``, then maps its chunks.

        ``root`` is the dataset directory both files must resolve inside
        (None: ``dir`` itself).

        Raises:
            FormatError: when a file is missing, truncated, outside ``root``,
                not a regular file, or the index does not describe ``rows``
                rows of ``dtype`` and ``shape`` in chunks of ``options``.
        """
        root = dir if root is None else root
        chunks_path, index_path = chunk_file_paths(dir, key)
        chunk_rows = options.chunk_rows
        row_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        where = f"{index_path} (column {key!r})"
        expected = index_size(math.ceil(rows / chunk_rows))
        largest = index_size(rows, irregular=True)  # one-row chunks listed one by one
        try:
            with open_inside(root, index_path) as f:
                size = os.fstat(f.fileno()).st_size
                if size > largest:
                    raise FormatError(
                        f"{where}: index of {rows} rows must be at most {largest} "
                        f"bytes ({expected} for {chunk_rows} rows per chunk), found {size}; {REWRITE_FIX}"
                    )
                data = f.read()
        except FileNotFoundError:
            raise FormatError(
                f"{where}: index file is missing; expected {expected} bytes for {rows} rows; {REWRITE_FIX}"
            ) from None
        index = ChunkIndex.from_bytes(data, where)
        found = (index.codec, index.rows, index.row_bytes, index.chunk_rows)
        want = (options.codec_tag, rows, row_bytes, chunk_rows)
        if found != want:
            raise FormatError(
                f"{where}: index describes (codec, rows, row_bytes, chunk_rows)={found}, the manifest "
                f"expects {want}; {REWRITE_FIX}"
            )
        size = int(index.offsets[-1])
        try:
            chunks = open_inside(root, chunks_path)
        except FileNotFoundError:
            raise FormatError(
                f"{chunks_path} (column {key!r}): chunks file is missing; expected {size} bytes; {REWRITE_FIX}"
            ) from None
        with chunks:
            st = os.fstat(chunks.fileno())
            if st.st_size != size:
                raise FormatError(
                    f"{chunks_path} (column {key!r}): expected {size} bytes from the index, found "
                    f"{st.st_size}; the file is truncated or corrupt; {REWRITE_FIX}"
                )
            mm = mmap.mmap(chunks.fileno(), 0, access=mmap.ACCESS_READ) if st.st_size else b""
        file_id = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, dtype.str, shape)
        return cls(chunks_path, index_path, key, dtype, shape, index, np.frombuffer(mm, dtype=np.uint8), file_id)

    def payload(self, chunk: int) -> np.ndarray:
        """The bytes of chunk ``chunk`` (a view of the map), once their crc32 matches the index.

        Raises:
            FormatError: when the crc32 does not match.
        """
        payload = self.data[self.offsets[chunk] : self.offsets[chunk + 1]]
        crc = zlib.crc32(payload)
        if crc != self.crcs[chunk]:
            raise FormatError(
                f"{self.where}: chunk {chunk} of {self.index.n_chunks} fails its crc32 check "
                f"(index {self.crcs[chunk]:08x}, data {crc:08x}); the shard is corrupt; {REWRITE_FIX}"
            )
        return payload

    def encoded_prefix(self, stop: int) -> EncodedChunks:
        """The chunks that lie wholly inside rows ``[0, stop)``, crc-checked and not decoded.

        Their payloads can be appended to another shard's column of the same
        encoding (and dictionary) as they are.
        """
        index = self.index
        rows = index.rows
        if not isinstance(stop, (int, np.integer)) or not 0 <= stop <= rows:
            raise IndexError(f"`stop` must be an int in [0, {rows}], got {stop!r}")
        n = index.chunk_of(int(stop)) if stop < rows else index.n_chunks  # chunks before the one of row `stop`
        payloads = tuple(self.payload(c).tobytes() for c in range(n))
        return EncodedChunks(payloads, tuple(index.chunk_len(c) for c in range(n)), self.dtype, self.shape,
                             index.codec)

    def close(self) -> None:
        """Drops the memory map (it is unmapped once no view of it is left)."""
        self.data = np.empty(0, np.uint8)
