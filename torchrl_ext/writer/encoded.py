"""Columns handed to the writer as chunks encoded elsewhere (:class:`~torchrl_ext.encodings.EncodedChunks`).

An episode may pass a column's rows as already-coded chunks (e.g. one closed
GOP per chunk demuxed from an mp4) instead of an array. The chunks are stored
as they are, so each must land exactly on the chunk grid of its shard: the
column's encoding has the same codec and chunk size, every chunk is full,
the shard size is a multiple of the chunk size and the episode starts on a
chunk boundary of the shard being written. Everything is checked before the
episode is recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..format import Column, Key

__all__ = ["encoded_placeholders", "check_encoded"]


def _key(key: Any) -> Key:
    k = (key,) if isinstance(key, str) else tuple(key) if isinstance(key, tuple) else None
    if not k or not all(isinstance(p, str) and p for p in k):
        raise TypeError(f"`encoded` keys must be str or tuples of str, got {key!r}")
    return k


def encoded_placeholders(encoded: Mapping[Any, Any] | None, cols: dict[Key, np.ndarray]) -> dict[Key, Any]:
    """Validates ``encoded`` and puts a zero-stride stand-in array for each of its columns into ``cols``.

    The stand-ins let the schema checks see each column's dtype and shape
    without decoding anything. Returns ``{key: EncodedChunks}``.
    """
    if not encoded:
        return {}
    from ..encodings import EncodedChunks

    if not isinstance(encoded, Mapping):
        raise TypeError(f"`encoded` must map a key to EncodedChunks, got {type(encoded).__name__}")
    out: dict[Key, Any] = {}
    for key, chunks in encoded.items():
        k = _key(key)
        if not isinstance(chunks, EncodedChunks):
            raise TypeError(f"`encoded[{key!r}]` must be EncodedChunks, got {type(chunks).__name__}")
        if k in cols:
            raise ValueError(f"{k!r} is given both in the episode and in `encoded`; pass it once")
        cols[k] = np.broadcast_to(np.zeros((), chunks.dtype), (len(chunks), *chunks.shape))
        out[k] = chunks
    return out


def check_encoded(chunks: Mapping[Key, Any], schema: list[Column], shard_rows: int, position: int) -> None:
    """``ValueError`` unless every encoded column lands on its shard's chunk grid.

    Args:
        chunks: ``{key: EncodedChunks}`` of one episode.
        schema: the dataset's columns (with their encodings).
        shard_rows: rows per shard.
        position: rows already in the shard the episode starts in.
    """
    from ..encodings import column_options

    by_key = {c.key: c for c in schema}
    for key, ch in chunks.items():
        col = by_key[key]
        if col.encoding == "raw":
            raise ValueError(
                f"`encoded[{key!r}]`: the column is stored raw; create the dataset with an encoding for it "
                "(ShardWriter.create(..., encodings={...})) or pass the rows as an array"
            )
        options = column_options(col)
        size = options.chunk_rows
        if (ch.codec, ch.dtype, ch.shape) != (options.codec_tag, col.dtype, col.shape):
            raise ValueError(
                f"`encoded[{key!r}]` holds (codec, dtype, shape)={(ch.codec, ch.dtype, ch.shape)}, the column is "
                f"{(options.codec_tag, col.dtype, col.shape)}; pass the rows as an array to encode them"
            )
        if any(r != size for r in ch.rows):
            raise ValueError(
                f"`encoded[{key!r}]` has chunks of {sorted(set(ch.rows))} rows; every chunk must hold the "
                f"column's {size} rows; pass the rows as an array to encode them"
            )
        if shard_rows % size or position % size:
            raise ValueError(
                f"`encoded[{key!r}]`: chunks of {size} rows need shard_rows a multiple of {size} and episodes "
                f"starting on a chunk boundary, got shard_rows={shard_rows} and {position} rows already in the "
                f"shard; create the dataset with shard_rows a multiple of {size} and write every episode of a "
                f"length divisible by {size}"
            )
