"""Reads one encoded column of one shard: the ``.chunks`` / ``.index`` pair of :mod:`.chunk_format`."""

from __future__ import annotations

import math
import mmap
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..format import FormatError
from .cache import DecodedChunkCache
from .chunk_format import ChunkIndex, chunk_file_paths, index_size
from .column_writer import EncodedChunks
from .options import EncodingOptions, Raw, Video, load_codec, resolve_encoding

__all__ = ["ChunkedColumnReader"]

_FIX = "re-write the shard or verify it against its source"


class ChunkedColumnReader:
    """Random and contiguous access to the rows of one encoded column of one shard.

    Opening reads and checks the index and memory-maps the chunks (no chunk is
    decoded). Every chunk's crc32 is checked before it is decoded. The reader
    pickles by path: a copy in another process re-opens the files.

    Args:
        dir: the shard directory.
        key: the column's nested key.
        dtype: numpy dtype of the column.
        shape: per-row shape.
        options: the column's encoding (an option object, name or JSON dict).
        rows: rows of the shard, as listed in the manifest.
        dictionary: the zstd dictionary bytes when the encoding uses one.
        cache: a :class:`DecodedChunkCache` shared by readers, or None.
        threads: decoding threads for gathers touching several chunks; None
            means 1 for zstd and 2 for video.

    Raises:
        FormatError: when a file is missing, truncated, or its index does not
            match ``rows``, ``dtype``, ``shape`` and ``options``.
    """

    def __init__(
        self,
        dir: str | os.PathLike,
        key: tuple[str, ...],
        dtype: np.dtype | str,
        shape: tuple[int, ...],
        options: EncodingOptions | str | dict[str, Any],
        rows: int,
        dictionary: bytes | None = None,
        cache: DecodedChunkCache | None = None,
        threads: int | None = None,
    ) -> None:
        self.options = resolve_encoding(options)
        if isinstance(self.options, Raw):
            raise ValueError("`options` is 'raw', which is not chunked; open the .memmap column instead")
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
            raise ValueError(f"`rows` must be an int >= 0, got {rows!r}")
        if threads is None:
            threads = 2 if isinstance(self.options, Video) else 1
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"`threads` must be a positive int, got {threads!r}")
        if cache is not None and not isinstance(cache, DecodedChunkCache):
            raise TypeError(f"`cache` must be a DecodedChunkCache or None, got {type(cache).__name__}")
        self.dir = Path(dir)
        self.key = tuple(key)
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(s) for s in shape)
        self.rows = rows
        self.dictionary = dictionary
        self.cache = cache
        self.threads = threads
        self._open()

    # -- opening ----------------------------------------------------------------------------
    def _open(self) -> None:
        self.codec = load_codec(self.options, self.dtype, self.shape, self.dictionary)
        self.chunks_path, self.index_path = chunk_file_paths(self.dir, self.key)
        self.chunk_rows = self.options.chunk_rows
        self.row_bytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        where = f"{self.index_path} (column {self.key!r})"
        expected = index_size(math.ceil(self.rows / self.chunk_rows))
        largest = index_size(self.rows, irregular=True)  # one-row chunks listed one by one
        try:
            with open(self.index_path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > largest:
                    raise FormatError(
                        f"{where}: index of {self.rows} rows must be at most {largest} "
                        f"bytes ({expected} for {self.chunk_rows} rows per chunk), found {size}; {_FIX}"
                    )
                data = f.read()
        except FileNotFoundError:
            raise FormatError(
                f"{where}: index file is missing; expected {expected} bytes for {self.rows} rows; {_FIX}"
            ) from None
        index = ChunkIndex.from_bytes(data, where)
        found = (index.codec, index.rows, index.row_bytes, index.chunk_rows)
        want = (self.options.codec_tag, self.rows, self.row_bytes, self.chunk_rows)
        if found != want:
            raise FormatError(
                f"{where}: index describes (codec, rows, row_bytes, chunk_rows)={found}, the manifest "
                f"expects {want}; {_FIX}"
            )
        try:
            fd = os.open(self.chunks_path, os.O_RDONLY)
        except FileNotFoundError:
            raise FormatError(
                f"{self.chunks_path} (column {self.key!r}): chunks file is missing; expected "
                f"{int(index.offsets[-1])} bytes; {_FIX}"
            ) from None
        try:
            st = os.fstat(fd)
            if st.st_size != index.offsets[-1]:
                raise FormatError(
                    f"{self.chunks_path} (column {self.key!r}): expected {int(index.offsets[-1])} bytes "
                    f"from the index, found {st.st_size}; the file is truncated or corrupt; {_FIX}"
                )
            mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ) if st.st_size else b""
        finally:
            os.close(fd)
        self._data = np.frombuffer(mm, dtype=np.uint8)
        self._index = index
        self._offsets = index.offsets.tolist()
        self._crcs = index.crcs.tolist()
        self._file_id = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, self.dtype.str, self.shape)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0

    @property
    def n_chunks(self) -> int:
        return self._index.n_chunks

    @property
    def index(self) -> ChunkIndex:
        """The column's parsed and checked chunk index (where each chunk starts and ends)."""
        return self._index

    def __len__(self) -> int:
        return self.rows

    # -- decoding ---------------------------------------------------------------------------
    def _payload(self, chunk: int) -> np.ndarray:
        payload = self._data[self._offsets[chunk] : self._offsets[chunk + 1]]
        crc = zlib.crc32(payload)
        if crc != self._crcs[chunk]:
            raise FormatError(
                f"{self.chunks_path} (column {self.key!r}): chunk {chunk} of {self.n_chunks} fails its "
                f"crc32 check (index {self._crcs[chunk]:08x}, data {crc:08x}); the shard is corrupt; {_FIX}"
            )
        return payload

    def _decode(
        self, chunk: int, stop: int | None = None, out: np.ndarray | None = None, first: int = 0
    ) -> np.ndarray:
        payload = self._payload(chunk)
        try:
            return self.codec.decode(payload, self._index.chunk_len(chunk), stop, out, first)
        except ValueError as err:
            raise FormatError(
                f"{self.chunks_path} (column {self.key!r}): chunk {chunk} of {self.n_chunks} does not "
                f"decode ({err}); {_FIX}"
            ) from err

    def _run(self, jobs: list[tuple]) -> list[np.ndarray]:
        """``_decode(*job)`` for each job, on the thread pool when there are several."""
        if len(jobs) > 1 and self.threads > 1:
            if self._pool is None or self._pool_pid != os.getpid():
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="chunk-decode")
                self._pool_pid = os.getpid()
            return list(self._pool.map(lambda job: self._decode(*job), jobs))
        return [self._decode(*job) for job in jobs]

    def _decoded(self, chunks: list[int], stops: list[int]) -> list[np.ndarray]:
        """Decoded rows of each chunk (at least its first ``stops[i]`` rows), via the cache."""
        cache = self.cache
        out: list[np.ndarray | None] = [None] * len(chunks)
        misses = []
        for i, (c, stop) in enumerate(zip(chunks, stops)):
            if cache is not None:
                hit = cache.get((self._file_id, c))
                if hit is not None and len(hit) >= stop:
                    out[i] = hit
                    continue
            misses.append(i)
        decoded = self._run([(chunks[i], stops[i]) for i in misses])
        for i, arr in zip(misses, decoded):
            out[i] = arr
            if cache is not None:
                cache.put((self._file_id, chunks[i]), arr)
        return out  # type: ignore[return-value]

    # -- public reads -----------------------------------------------------------------------
    def gather(self, local_rows: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Fills ``out[i]`` with row ``local_rows[i]``, decoding each touched chunk once.

        Without a cache, video rows that are consecutive in both ``local_rows``
        and the shard are decoded straight into ``out``.

        Args:
            local_rows: int array ``[n]`` of row numbers inside this shard, any
                order, repeats allowed.
            out: array ``[n, *shape]`` of the column's dtype.

        Returns:
            ``out``.
        """
        idx = np.asarray(local_rows)
        if idx.ndim != 1 or (idx.dtype.kind not in "iu" and idx.size):
            raise TypeError(f"`local_rows` must be a 1-d int array, got shape {idx.shape} dtype {idx.dtype}")
        n = len(idx)
        if out.shape != (n, *self.shape) or out.dtype != self.dtype:
            raise ValueError(
                f"`out` must have shape {(n, *self.shape)} and dtype {self.dtype}, "
                f"got {out.shape} and {out.dtype}"
            )
        if n == 0:
            return out
        idx = idx.astype(np.int64, copy=False)
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= self.rows:
            raise IndexError(f"`local_rows` must lie in [0, {self.rows}), got values in [{lo}, {hi}]")
        chunk, within = self._index.locate(idx)
        direct = self.cache is None and isinstance(self.options, Video)
        if n == 1 and not direct:
            (arr,) = self._decoded([int(chunk[0])], [int(within[0]) + 1])
            out[0] = arr[within[0]]
            return out
        order = np.argsort(chunk, kind="stable")
        sorted_chunk = chunk[order]
        starts = np.concatenate(([0], np.flatnonzero(sorted_chunk[1:] != sorted_chunk[:-1]) + 1))
        stops = np.maximum.reduceat(within[order], starts) + 1
        groups = zip(sorted_chunk[starts].tolist(), starts.tolist(), np.append(starts[1:], n).tolist(), stops.tolist())
        if direct:
            jobs, fills = [], []
            for c, s, e, stop in groups:
                sel = order[s:e]
                w = within[sel]
                k = e - s
                if sel[-1] - sel[0] == k - 1 and w[-1] - w[0] == k - 1 and (k < 3 or bool((np.diff(w) == 1).all())):
                    jobs.append((c, None, out[sel[0] : sel[-1] + 1], int(w[0])))
                    fills.append(None)
                else:
                    jobs.append((c, stop))
                    fills.append((sel, w))
            for arr, fill in zip(self._run(jobs), fills):
                if fill is not None:
                    out[fill[0]] = arr[fill[1]]
            return out
        groups = list(groups)
        arrays = self._decoded([g[0] for g in groups], [g[3] for g in groups])
        for arr, (_, s, e, _) in zip(arrays, groups):
            if e - s == 1:
                j = order[s]
                out[j] = arr[within[j]]
            else:
                sel = order[s:e]
                out[sel] = arr[within[sel]]
        return out

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of the shard as a new ``[stop - start, *shape]`` array."""
        if not (isinstance(start, (int, np.integer)) and isinstance(stop, (int, np.integer))) or not (
            0 <= start <= stop <= self.rows
        ):
            raise IndexError(f"`start`, `stop` must satisfy 0 <= start <= stop <= {self.rows}, got {start}, {stop}")
        start, stop = int(start), int(stop)
        out = np.empty((stop - start, *self.shape), dtype=self.dtype)
        if stop == start:
            return out
        index = self._index
        chunks = list(range(index.chunk_of(start), index.chunk_of(stop - 1) + 1))
        firsts = [index.chunk_start(c) for c in chunks]
        spans = [(max(start, f), min(stop, f + index.chunk_len(c))) for c, f in zip(chunks, firsts)]
        if self.cache is None:
            self._run([(c, None, out[a - start : b - start], a - f)
                       for c, f, (a, b) in zip(chunks, firsts, spans)])
            return out
        stops = [b - f for f, (_, b) in zip(firsts, spans)]
        for arr, f, (a, b) in zip(self._decoded(chunks, stops), firsts, spans):
            out[a - start : b - start] = arr[a - f : b - f]
        return out

    def encoded_prefix(self, stop: int) -> EncodedChunks:
        """The chunks that lie wholly inside rows ``[0, stop)``, crc-checked and not decoded.

        Their payloads can be appended to another shard's column of the same
        encoding (and dictionary) as they are.
        """
        if not isinstance(stop, (int, np.integer)) or not 0 <= stop <= self.rows:
            raise IndexError(f"`stop` must be an int in [0, {self.rows}], got {stop!r}")
        index = self._index
        n = index.chunk_of(int(stop)) if stop < self.rows else self.n_chunks  # chunks before the one of row `stop`
        payloads = tuple(self._payload(c).tobytes() for c in range(n))
        return EncodedChunks(payloads, tuple(index.chunk_len(c) for c in range(n)), self.dtype, self.shape,
                             self.options.codec_tag)

    def verify(self, decode: bool = False) -> None:
        """Checks every chunk's crc32 (and, with ``decode``, that it decodes to its rows).

        Raises:
            FormatError: naming the first damaged chunk.
        """
        for c in range(self.n_chunks):
            if decode:
                self._decode(c)
            else:
                self._payload(c)

    def close(self) -> None:
        """Releases the memory map and the decoding threads."""
        if self._pool is not None and self._pool_pid == os.getpid():
            self._pool.shutdown(wait=False)
        self._pool = None
        self._data = np.empty(0, np.uint8)

    # -- pickling by path -------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {
            "dir": str(self.dir),
            "key": self.key,
            "dtype": self.dtype.str,
            "shape": self.shape,
            "options": self.options.to_json(),
            "rows": self.rows,
            "dictionary": self.dictionary,
            "cache": self.cache,
            "threads": self.threads,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.options = resolve_encoding(state["options"])
        self.dir = Path(state["dir"])
        self.key = tuple(state["key"])
        self.dtype = np.dtype(state["dtype"])
        self.shape = tuple(state["shape"])
        self.rows = state["rows"]
        self.dictionary = state["dictionary"]
        self.cache = state["cache"]
        self.threads = state["threads"]
        self._open()

    def __repr__(self) -> str:
        return (
            f"ChunkedColumnReader({str(self.chunks_path)!r}, rows={self.rows}, "
            f"chunks={self.n_chunks}, encoding={self.options!r})"
        )
