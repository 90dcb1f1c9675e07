"""Reads one encoded column of one shard: the ``.chunks`` / ``.index`` pair of :mod:`.chunk_format`.

The reader picks the rows: a batch of a zstd column is decoded with one
compiled call (:mod:`.batch_decode`); a video column groups the rows by chunk,
decodes each touched chunk once and copies the rows out. Opening and checking
the files is :mod:`.chunk_files`; decoding chunks one by one, on threads and
through the shared cache, is :mod:`.chunk_decoder`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .batch_decode import ZstdColumn
from .cache import DecodedChunkCache
from .chunk_decoder import ChunkDecoder
from .chunk_files import ChunkFiles
from .chunk_format import ChunkIndex
from .column_writer import EncodedChunks
from .options import EncodingOptions, Raw, Video, Zstd, load_codec, resolve_encoding

__all__ = ["ChunkedColumnReader"]


class ChunkedColumnReader:
    """Random and contiguous access to the rows of one encoded column of one shard.

    Opening reads and checks the index and memory-maps the chunks (no chunk is
    decoded). A zstd batch is checked by its frame headers and zstd's content
    checksum of every frame; a chunk decoded on its own (video, or a zstd
    frame without a content checksum) by its crc32 first. The reader pickles
    by path: a copy in another process re-opens the files.

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
        root: the dataset directory the files must resolve inside (symlinks
            followed); None means ``dir``.

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
        root: str | os.PathLike | None = None,
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
        self.root = self.dir if root is None else root  # as given: a resolved_root() stays resolved
        self.key = tuple(key)
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(s) for s in shape)
        self.rows = rows
        self.dictionary = dictionary
        self._open(cache, threads)

    # -- opening ----------------------------------------------------------------------------
    def _open(self, cache: DecodedChunkCache | None, threads: int) -> None:
        self.codec = load_codec(self.options, self.dtype, self.shape, self.dictionary)
        self._files = ChunkFiles.open(self.dir, self.key, self.dtype, self.shape, self.options, self.rows,
                                      self.root)
        self.chunks_path, self.index_path = self._files.chunks_path, self._files.index_path
        self.chunk_rows = self.options.chunk_rows
        self.row_bytes = self._files.index.row_bytes
        self._index = self._files.index
        self._decoder = ChunkDecoder(self._files, self.codec, cache, threads)
        self._batched = isinstance(self.options, Zstd)
        self._column: ZstdColumn | None = None

    @property
    def files(self) -> ChunkFiles:
        """The column's opened ``.index`` / ``.chunks`` pair."""
        return self._files

    @property
    def decoder(self) -> ChunkDecoder:
        """Decodes chunks one by one (and owns the column's decoding threads)."""
        return self._decoder

    @property
    def batched(self) -> bool:
        """True when a batch over several shards of this column decodes in one call
        (:class:`~.batch_decode.ZstdColumn`): the zstd codec."""
        return self._batched

    def _zstd(self) -> ZstdColumn:
        if self._column is None:
            self._column = ZstdColumn([self])
        return self._column

    @property
    def cache(self) -> DecodedChunkCache | None:
        """The :class:`DecodedChunkCache` decoded chunks go through, or None (settable)."""
        return self._decoder.cache

    @cache.setter
    def cache(self, cache: DecodedChunkCache | None) -> None:
        self._decoder.cache = cache

    @property
    def threads(self) -> int:
        """Decoding threads for gathers touching several chunks (settable)."""
        return self._decoder.threads

    @threads.setter
    def threads(self, threads: int) -> None:
        self._decoder.threads = threads

    @property
    def n_chunks(self) -> int:
        return self._index.n_chunks

    @property
    def index(self) -> ChunkIndex:
        """The column's parsed and checked chunk index (where each chunk starts and ends)."""
        return self._index

    def __len__(self) -> int:
        return self.rows

    # -- public reads -----------------------------------------------------------------------
    def gather(self, local_rows: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Fills ``out[i]`` with row ``local_rows[i]``, decoding each touched chunk once.

        A zstd column decodes every touched chunk in one call. Without a cache, video rows that are consecutive in both ``local_rows``
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
        if self._batched:
            return self._zstd().gather(np.zeros(1, np.int64), np.array([0, n]), idx, None, out)
        chunk, within = self._index.locate(idx)
        decoder = self._decoder
        direct = decoder.cache is None and isinstance(self.options, Video)
        if n == 1 and not direct:
            (arr,) = decoder.decoded([int(chunk[0])], [int(within[0]) + 1])
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
            for arr, fill in zip(decoder.run(jobs), fills):
                if fill is not None:
                    out[fill[0]] = arr[fill[1]]
            return out
        groups = list(groups)
        arrays = decoder.decoded([g[0] for g in groups], [g[3] for g in groups])
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
        index = self._index
        if self._batched and stop > start:  # whole chunks in one call; the rows are a view of them
            first, last = index.chunk_of(start), index.chunk_of(stop - 1)
            at = index.chunk_start(first)
            return self._zstd().read(0, first, last)[start - at : stop - at]
        out = np.empty((stop - start, *self.shape), dtype=self.dtype)
        if stop == start:
            return out
        chunks = list(range(index.chunk_of(start), index.chunk_of(stop - 1) + 1))
        firsts = [index.chunk_start(c) for c in chunks]
        spans = [(max(start, f), min(stop, f + index.chunk_len(c))) for c, f in zip(chunks, firsts)]
        decoder = self._decoder
        if decoder.cache is None:
            decoder.run([(c, None, out[a - start : b - start], a - f)
                         for c, f, (a, b) in zip(chunks, firsts, spans)])
            return out
        stops = [b - f for f, (_, b) in zip(firsts, spans)]
        for arr, f, (a, b) in zip(decoder.decoded(chunks, stops), firsts, spans):
            out[a - start : b - start] = arr[a - f : b - f]
        return out

    def encoded_prefix(self, stop: int) -> EncodedChunks:
        """The chunks that lie wholly inside rows ``[0, stop)``, crc-checked and not decoded.

        Their payloads can be appended to another shard's column of the same
        encoding (and dictionary) as they are.
        """
        return self._files.encoded_prefix(stop)

    def verify(self, decode: bool = False) -> None:
        """Checks every chunk's crc32 (and, with ``decode``, that it decodes to its rows).

        Raises:
            FormatError: naming the first damaged chunk.
        """
        check = self._decoder.decode if decode else self._files.payload
        for c in range(self.n_chunks):
            check(c)

    def close(self) -> None:
        """Releases the memory map and the decoding threads."""
        self._column = None
        self._decoder.close()
        self._files.close()

    # -- pickling by path -------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {
            "dir": str(self.dir),
            "root": str(self.root),
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
        self.root = Path(state.get("root", state["dir"]))
        self.key = tuple(state["key"])
        self.dtype = np.dtype(state["dtype"])
        self.shape = tuple(state["shape"])
        self.rows = state["rows"]
        self.dictionary = state["dictionary"]
        self._open(state["cache"], state["threads"])

    def __repr__(self) -> str:
        return (
            f"ChunkedColumnReader({str(self.chunks_path)!r}, rows={self.rows}, "
            f"chunks={self.n_chunks}, encoding={self.options!r})"
        )
