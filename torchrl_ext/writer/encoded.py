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
episode is recorded. :func:`accepted_columns` says which columns take chunks
(``ShardWriter.encoded_columns``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..format import Column, Key, Manifest

__all__ = ["encoded_placeholders", "check_encoded", "chunk_ends", "rows_to_chunk_end", "accepted_columns"]


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


def rows_to_chunk_end(ends: np.ndarray, written: int, room: int) -> int:
    """Rows of an episode that a shard with ``room`` rows left takes when the episode goes on after it.

    The shard then ends at the last chunk end within its room; 0 (or less)
    means the next chunk does not fit and the shard ends before it.

    Args:
        ends: the rows at which the episode's chunks end (:func:`chunk_ends`).
        written: rows of the episode already in earlier shards.
        room: rows the shard can still take.

    Example:
        >>> rows_to_chunk_end(np.array([4, 8, 10]), written=0, room=6)
        4
        >>> rows_to_chunk_end(np.array([4, 8, 10]), written=4, room=3)
        0
    """
    k = int(np.searchsorted(ends, written + room, side="right"))
    return (int(ends[k - 1]) if k else 0) - written


def accepted_columns(manifest: Manifest, encodings: Mapping[Key, Any], dictionaries: Mapping[Key, bytes],
                     untrained: set[Key]) -> dict[Key, tuple[Any, bytes | None]]:
    """``{key: (encoding options, dictionary bytes or None)}`` of the columns rows may arrive pre-encoded for.

    Args:
        manifest: the dataset's manifest; its schema's encoded columns count
            once it has one.
        encodings: the encodings given to ``ShardWriter.create``, which count
            before the first episode (but not zstd with a dictionary: it is
            not trained yet).
        dictionaries: the trained dictionaries by key.
        untrained: zstd columns still waiting for their dictionary, left out.
    """
    from ..encodings import column_options

    if manifest.schema:
        cols = {c.key: c for c in manifest.schema if c.encoding != "raw"}
        return {k: (column_options(c), dictionaries.get(k)) for k, c in cols.items() if k not in untrained}
    return {k: (o, None) for k, o in encodings.items()
            if o.name != "raw" and not getattr(o, "dictionary", False)}
