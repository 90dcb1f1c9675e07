"""Columns handed to the writer as chunks encoded elsewhere (:class:`~torchrl_ext.encodings.EncodedChunks`).

An episode may pass a column's rows as already-coded chunks (e.g. one closed
GOP per chunk demuxed from an mp4, or frames a generation worker encoded)
instead of an array. The chunks are stored as they are: the column's encoding
must have the same codec, dtype and row shape, and no chunk may hold more
rows than the column's chunk size (a short chunk, at an episode end say, is
fine: the shard's index then lists each chunk's rows). An episode that
continues in the next shard is split there at a chunk boundary, so a shard
may end a few rows short of ``shard_rows``. Several encoded columns of one
episode must share their chunk boundaries. Everything is checked before the
episode is recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..format import Column, Key

__all__ = ["encoded_placeholders", "check_encoded", "chunk_ends", "resolve_column_encodings"]


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


def check_encoded(chunks: Mapping[Key, Any], schema: list[Column], shard_rows: int) -> None:
    """``ValueError`` unless every encoded column fits its column and all share their chunk boundaries.

    Args:
        chunks: ``{key: EncodedChunks}`` of one episode.
        schema: the dataset's columns (with their encodings).
        shard_rows: rows per shard.
    """
    from ..encodings import column_options

    by_key = {c.key: c for c in schema}
    grid = None
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
        if max(ch.rows, default=0) > size:
            raise ValueError(
                f"`encoded[{key!r}]` has a chunk of {max(ch.rows)} rows, the column's chunks hold at most {size}; "
                f"create the dataset with an encoding of chunk size >= {max(ch.rows)} or pass the rows as an array"
            )
        if size > shard_rows:
            raise ValueError(
                f"`encoded[{key!r}]`: chunks of up to {size} rows do not fit shards of {shard_rows} rows; create "
                f"the dataset with shard_rows >= {size}"
            )
        if grid is not None and ch.rows != grid:
            raise ValueError(
                f"`encoded[{key!r}]` has chunks of {ch.rows} rows, another encoded column of the episode has "
                f"{grid}; encoded columns of one episode must share their chunk boundaries"
            )
        grid = ch.rows


def chunk_ends(rows: Mapping[Key, Any]) -> np.ndarray | None:
    """Rows at which the pre-encoded chunks of an episode end, or None when it has none."""
    from ..encodings import EncodedChunks

    for value in rows.values():
        if isinstance(value, EncodedChunks):
            return np.cumsum(value.rows, dtype=np.int64)
    return None


def resolve_column_encodings(encodings: Mapping[Any, Any] | None) -> dict[Key, Any]:
    """``{key tuple: encoding options}`` from ``ShardWriter.create``'s ``encodings`` argument."""
    if not encodings:
        return {}
    if not isinstance(encodings, Mapping):
        raise TypeError(f"`encodings` must be a mapping of key -> encoding, got {type(encodings).__name__}")
    from ..encodings import resolve_encoding

    out: dict[Key, Any] = {}
    for key, spec in encodings.items():
        k = (key,) if isinstance(key, str) else tuple(key)
        if not k or not all(isinstance(x, str) for x in k):
            raise TypeError(f"`encodings` keys must be str or tuples of str, got {key!r}")
        out[k] = resolve_encoding(spec)
    return out
