"""Decoding the chunks of one encoded column: checked payload in, rows out, on threads and through a cache.

A batch of chunks to decode is a list of jobs, the arguments of
:meth:`ChunkDecoder.decode`; several jobs run on a thread pool (the codecs
release the GIL), one runs inline. :meth:`ChunkDecoder.decoded` first looks
each chunk up in the :class:`~.cache.DecodedChunkCache` shared by the readers
of a dataset, keyed by the column's file id and the chunk number.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..format import FormatError
from .cache import DecodedChunkCache
from .chunk_files import REWRITE_FIX, ChunkFiles

__all__ = ["ChunkDecoder"]


class ChunkDecoder:
    """Decodes chunks of one column's :class:`~.chunk_files.ChunkFiles`.

    Args:
        files: the column's opened files.
        codec: the column's codec (:func:`~.options.load_codec`).
        cache: a :class:`DecodedChunkCache` shared by readers, or None.
        threads: decoding threads for a batch of several chunks.
    """

    def __init__(self, files: ChunkFiles, codec: Any, cache: DecodedChunkCache | None, threads: int) -> None:
        self.files = files
        self.codec = codec
        self.cache = cache
        self.threads = threads
        self._payload = files.payload  # bound once: no lookup through `files` per chunk
        self._index = files.index
        self._file_id = files.file_id
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0

    def decode(
        self, chunk: int, stop: int | None = None, out: np.ndarray | None = None, first: int = 0
    ) -> np.ndarray:
        """Rows ``first:stop`` of chunk ``chunk`` (all rows when ``stop`` is None), into ``out`` when given.

        Raises:
            FormatError: when the chunk fails its crc32 check or does not decode.
        """
        payload = self._payload(chunk)
        try:
            return self.codec.decode(payload, self._index.chunk_len(chunk), stop, out, first)
        except ValueError as err:
            raise FormatError(
                f"{self.files.where}: chunk {chunk} of {self._index.n_chunks} does not "
                f"decode ({err}); {REWRITE_FIX}"
            ) from err

    def run(self, jobs: list[tuple]) -> list[np.ndarray]:
        """``decode(*job)`` for each job, on the thread pool when there are several."""
        return self.map(lambda job: self.decode(*job), jobs)

    def map(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        """``fn(item)`` for each item, on the column's thread pool when there are several and ``threads > 1``."""
        if len(items) > 1 and self.threads > 1:
            if self._pool is None or self._pool_pid != os.getpid():
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="chunk-decode")
                self._pool_pid = os.getpid()
            return list(self._pool.map(fn, items))
        return [fn(item) for item in items]

    def decoded(self, chunks: list[int], stops: list[int]) -> list[np.ndarray]:
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
        decoded = self.run([(chunks[i], stops[i]) for i in misses])
        for i, arr in zip(misses, decoded):
            out[i] = arr
            if cache is not None:
                cache.put((self._file_id, chunks[i]), arr)
        return out  # type: ignore[return-value]

    def close(self) -> None:
        """Shuts the decoding threads down (a pool inherited over ``fork`` is left alone)."""
        if self._pool is not None and self._pool_pid == os.getpid():
            self._pool.shutdown(wait=False)
        self._pool = None
