"""Encoded columns of a shard as the writer and reader see them: a manifest ``Column`` in, files out.

The writer side appends rows and reports ``(bytes, [crc32])`` for the shard
checksum (the crc32 of the ``.chunks`` bytes followed by the ``.index``
bytes); the reader side gathers rows. Both take the column's encoding and
options from the manifest entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..format import DICTIONARY_OPTIONS, Column
from .cache import DecodedChunkCache
from .column_reader import ChunkedColumnReader
from .column_writer import ChunkedColumnWriter, EncodedChunks
from .options import resolve_encoding

__all__ = ["encoded_column_writer", "encoded_column_reader", "column_options"]


def column_options(col: Column) -> Any:
    """The encoding option object of a manifest column."""
    opts = {k: v for k, v in col.options_dict.items() if k not in DICTIONARY_OPTIONS}
    return resolve_encoding({"name": col.encoding, **opts})


class _Writer:
    def __init__(self, directory: Path, col: Column, dictionary: bytes | None) -> None:
        self._w = ChunkedColumnWriter(directory, col.key, col.dtype, col.shape, column_options(col), dictionary)

    def append(self, arr: np.ndarray) -> None:
        self._w.append(arr)

    def append_encoded(self, chunks: EncodedChunks) -> None:
        self._w.append_encoded(chunks)

    def cut(self) -> None:
        self._w.cut()

    def close(self) -> tuple[int, list[int]]:
        stats = self._w.close()
        return stats.bytes, [stats.crc32]

    def discard(self) -> None:
        self._w.abort()


def encoded_column_writer(directory: Path, col: Column, dictionary: bytes | None = None) -> _Writer:
    """A writer of one encoded column of a shard being written."""
    return _Writer(directory, col, dictionary)


def encoded_column_reader(directory: Path, col: Column, rows: int, dictionary: bytes | None = None, *,
                          cache: DecodedChunkCache | None = None, threads: int | None = None,
                          root: Path | None = None) -> ChunkedColumnReader:
    """A reader of one encoded column of a committed shard (``gather`` / ``read``).

    ``root``: the dataset directory its files must resolve inside (None: ``directory``).
    """
    return ChunkedColumnReader(directory, col.key, col.dtype, col.shape, column_options(col), rows,
                               dictionary=dictionary, cache=cache, threads=threads, root=root)
