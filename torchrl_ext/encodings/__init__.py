"""Per-column encodings: lossless zstd and lossy video chunks, decoded on read.

The option objects name an encoding in the manifest; a column writer and
reader pair stores one encoded column of one shard as the ``.chunks`` /
``.index`` files specified in :mod:`torchrl_ext.encodings.chunk_format`.
"""

from .cache import DecodedChunkCache
from .chunk_format import ChunkIndex, chunk_file_paths
from .column_reader import ChunkedColumnReader
from .column_writer import ChunkedColumnWriter, ChunkStats, EncodedChunks
from .options import (
    KNOWN_ENCODINGS,
    EncodingOptions,
    Raw,
    Video,
    Zstd,
    check_column,
    load_codec,
    resolve_encoding,
)
from .quality import psnr
from .shard_columns import column_options, encoded_column_reader, encoded_column_writer
from .zstd_codec import train_dictionary

__all__ = [
    # options
    "Raw",
    "Zstd",
    "Video",
    "EncodingOptions",
    "KNOWN_ENCODINGS",
    "resolve_encoding",
    "check_column",
    "load_codec",
    "train_dictionary",
    # column files
    "chunk_file_paths",
    "ChunkIndex",
    "ChunkedColumnWriter",
    "ChunkStats",
    "EncodedChunks",
    "ChunkedColumnReader",
    "DecodedChunkCache",
    # shard columns
    "encoded_column_writer",
    "encoded_column_reader",
    "column_options",
    # quality
    "psnr",
]
