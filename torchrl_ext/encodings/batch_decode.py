"""A batch of rows of a zstd column, over one or several shards, decoded with one compiled call.

Index arrays in, rows out, no Python per row or per chunk:

1. per shard, numpy finds the chunks the rows need (each once) and their byte
   ranges in the mapped ``.chunks`` file (:func:`plan_rows`);
2. the frame headers of those chunks are checked together
   (:func:`frames_are_checked`): zstd's magic number, a content checksum, and
   a content size equal to the chunk's rows, so no frame can land on another
   chunk's rows;
3. the frames are copied back to back into one buffer (one fancy index per
   shard; a view of the map when they are adjacent in the file);
4. one :meth:`~.zstd_codec.ZstdCodec.decode_frames` call decompresses them
   all with the GIL released, zstd checking every frame's content checksum
   (split into ``threads`` calls on the column's thread pool when asked);
5. one ``np.take`` puts the rows in request order, skipped when the frames
   already are the requested rows in order (one-row chunks, no repeats,
   one shard).

A frame without a content checksum (not written by this package), or any
failure of the one call, sends the chunks through the chunk-by-chunk path,
which checks each chunk's crc32 and names the damaged chunk in its
:class:`~torchrl_ext.format.FormatError`. ``verify()`` keeps checking every
chunk's crc32.

The decoded-chunk cache is used only where it pays: chunks of several rows
that each serve at least two rows of the batch (windows and slices over
chunks of 16 rows, say), never on uniform random rows nor with one-row chunks,
whose decode costs less than a lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .chunk_format import ChunkIndex

__all__ = ["Block", "plan_rows", "chunk_sizes", "frames_are_checked", "gather_blocks", "decode_chunk_range"]

_MAGIC = np.frombuffer(b"\x28\xb5\x2f\xfd", np.uint8)  # zstd frame magic number, little-endian 0xFD2FB528
_DICT_ID_BYTES = np.array([0, 1, 2, 4], np.int64)
_SIZE_BYTES = np.array([0, 2, 4, 8], np.int64)  # by Frame_Content_Size_flag; 0 means 1 with Single_Segment
_HEADER_SPAN = 18  # magic, descriptor, window byte, dictionary id and content size: at most 4 + 1 + 1 + 4 + 8
_SHIFTS = (np.arange(8, dtype=np.uint64) * np.uint64(8))[None, :]
_MIN_RUNS_FOR_CACHE = 2  # rows of the batch per touched chunk from which the cache pays


def chunk_sizes(index: ChunkIndex, chunks: np.ndarray) -> np.ndarray:
    """Rows of each of ``chunks`` (int64 array)."""
    if index.row_starts is None:
        return np.minimum(index.chunk_rows, index.rows - chunks * index.chunk_rows)
    return index.row_starts[chunks + 1] - index.row_starts[chunks]


def plan_rows(index: ChunkIndex, local: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The chunks to decode for rows ``local`` (int64, in range, any order, repeats allowed).

    Returns ``(chunks, sizes, pos)``: the chunks in decode order, their rows,
    and for each requested row its row in the decoded block, or None when the
    decoded block is the requested rows in order (one-row chunks, no repeats).

    >>> i = ChunkIndex("zstd", 10, 1, 4, np.zeros(4, np.int64), np.zeros(3, np.uint32))
    >>> [a.tolist() if a is not None else None for a in plan_rows(i, np.array([9, 1, 2, 1]))]
    [[0, 2], [4, 2], [5, 1, 2, 1]]
    """
    chunk, within = index.locate(local)
    if index.chunk_rows == 1 or (index.row_starts is not None and bool((chunk_sizes(index, chunk) == 1).all())):
        ordered = np.sort(chunk)
        if not bool((ordered[1:] == ordered[:-1]).any()):
            return chunk, np.ones(chunk.shape, np.int64), None
    chunks, inverse = np.unique(chunk, return_inverse=True)
    sizes = chunk_sizes(index, chunks)
    first = np.cumsum(sizes) - sizes
    return chunks, sizes, first[inverse.reshape(-1)] + within


def frames_are_checked(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, content: np.ndarray) -> bool:
    """True when each ``data[starts[i]:starts[i] + lengths[i]]`` opens a zstd frame with a content
    checksum and a content size of ``content[i]`` bytes (all frames read at once)."""
    if not data.size or not starts.size:
        return bool(data.size) or not starts.size
    at = np.minimum(starts[:, None] + np.arange(_HEADER_SPAN), data.size - 1)
    head = data[at]
    descriptor = head[:, 4].astype(np.int64)
    single = (descriptor >> 5) & 1
    size_flag = descriptor >> 6
    size = np.where((size_flag == 0) & (single == 1), 1, _SIZE_BYTES[size_flag])
    field = 5 + (1 - single) + _DICT_ID_BYTES[descriptor & 3]  # where the content size starts
    raw = np.take_along_axis(head, np.minimum(field[:, None] + np.arange(8), _HEADER_SPAN - 1), axis=1)
    raw = np.where(np.arange(8)[None, :] < size[:, None], raw, 0).astype(np.uint64)
    value = (raw << _SHIFTS).sum(axis=1, dtype=np.uint64) + np.where(size == 2, 256, 0).astype(np.uint64)
    ok = ((head[:, :4] == _MAGIC).all(axis=1) & (descriptor & 0x04 != 0) & (descriptor & 0x08 == 0)
          & (size > 0) & (lengths >= field + size + 3 + 4) & (value == content.astype(np.uint64)))
    return bool(ok.all())


@dataclass
class Block:
    """One shard's share of a batch: a column reader, the chunks to decode and where the rows land.

    ``pos`` is None when the decoded block is the requested rows in order.
    """

    reader: Any  # a ChunkedColumnReader
    chunks: np.ndarray
    sizes: np.ndarray
    pos: np.ndarray | None

    @classmethod
    def plan(cls, reader: Any, local: np.ndarray) -> Block:
        """The block of ``reader`` for its rows ``local``."""
        return cls(reader, *plan_rows(reader.index, local))

    @property
    def rows(self) -> int:
        return int(self.sizes.sum())


def _frames(block: Block) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(starts, lengths, checked)`` of the block's frames in its column's ``.chunks`` file."""
    files = block.reader.files
    offsets = files.index.offsets
    starts = offsets[block.chunks]
    lengths = offsets[block.chunks + 1] - starts
    checked = frames_are_checked(files.data, starts, lengths, block.sizes * block.reader.row_bytes)
    return starts, lengths, checked


def _copy_frames(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, out: np.ndarray | None = None
                 ) -> np.ndarray:
    """The frames back to back (a view of ``data`` when they are adjacent there, unless ``out`` is given)."""
    total = int(lengths.sum())
    if out is None and bool((starts[1:] == starts[:-1] + lengths[:-1]).all()):
        first = int(starts[0])
        return data[first : first + total]
    src = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(total)
    return np.take(data, src, out=out, mode="clip")


def _decode_one_call(blocks: list[Block], frames: list[tuple[np.ndarray, np.ndarray]], target: np.ndarray) -> None:
    """Decodes the checked frames of ``blocks`` into ``target`` (their rows back to back), one call per thread."""
    reader = blocks[0].reader
    if len(blocks) == 1:
        starts, lengths = frames[0]
        buffer = _copy_frames(reader.files.data, starts, lengths)
    else:
        lengths = np.concatenate([f[1] for f in frames])
        buffer = np.empty(int(lengths.sum()), np.uint8)
        at = 0
        for b, (s, n) in zip(blocks, frames):
            size = int(n.sum())
            _copy_frames(b.reader.files.data, s, n, buffer[at : at + size])
            at += size
    sizes = blocks[0].sizes if len(blocks) == 1 else np.concatenate([b.sizes for b in blocks])
    parts = min(reader.threads, len(sizes) // 2)
    if parts <= 1:
        reader.codec.decode_frames(buffer, target, int(lengths[-1]))
        return
    cut = np.linspace(0, len(sizes), parts + 1).astype(np.int64).tolist()
    byte_at = np.concatenate(([0], np.cumsum(lengths))).tolist()
    row_at = np.concatenate(([0], np.cumsum(sizes))).tolist()
    jobs = [(buffer[byte_at[a] : byte_at[b]], target[row_at[a] : row_at[b]], int(lengths[b - 1]))
            for a, b in zip(cut[:-1], cut[1:])]
    reader.decoder.map(lambda job: reader.codec.decode_frames(*job), jobs)


def _decode_each(block: Block, target: np.ndarray) -> None:
    """Chunk by chunk: each chunk's crc32 checked, a damaged one named in the ``FormatError``."""
    decode = block.reader.decoder.decode
    at = 0
    for c, n in zip(block.chunks.tolist(), block.sizes.tolist()):
        decode(c, None, target[at : at + n])
        at += n


def _decode_blocks(blocks: list[Block], target: np.ndarray) -> None:
    """Every block's chunks into ``target``, their rows back to back: one call when every frame is
    checked, else one call per block whose frames are, chunk by chunk for the others."""
    frames = [_frames(b) for b in blocks]
    first = blocks[0].reader
    if all(f[2] for f in frames) and all(b.reader.dictionary == first.dictionary for b in blocks[1:]):
        try:
            _decode_one_call(blocks, [f[:2] for f in frames], target)
            return
        except ValueError:
            frames = [(s, n, False) for s, n, _ in frames]  # chunk by chunk: names the damaged chunk
    at = 0
    for b, (starts, lengths, checked) in zip(blocks, frames):
        part = target[at : at + b.rows]
        at += b.rows
        if checked:
            try:
                _decode_one_call([b], [(starts, lengths)], part)
                continue
            except ValueError:
                pass
        _decode_each(b, part)


def _cache_pays(blocks: list[Block], n: int) -> bool:
    reader = blocks[0].reader
    return (reader.cache is not None and reader.index.chunk_rows > 1
            and n >= _MIN_RUNS_FOR_CACHE * sum(len(b.chunks) for b in blocks))


def _decode_cached(blocks: list[Block], target: np.ndarray) -> None:
    """Like :func:`_decode_blocks`, through the shared decoded-chunk cache (one lookup per chunk)."""
    at = 0
    for b in blocks:
        cache, file_id = b.reader.cache, b.reader.files.file_id
        starts = (np.cumsum(b.sizes) - b.sizes + at).tolist()
        missed = []
        for i, (c, n, a) in enumerate(zip(b.chunks.tolist(), b.sizes.tolist(), starts)):
            hit = cache.get((file_id, c))
            if hit is not None and len(hit) >= n:
                target[a : a + n] = hit[:n]
            else:
                missed.append(i)
        if missed:
            miss = Block(b.reader, b.chunks[missed], b.sizes[missed], None)
            rows = np.empty((miss.rows, *target.shape[1:]), target.dtype)
            _decode_blocks([miss], rows)
            r = 0
            for i in missed:
                c, n, a = int(b.chunks[i]), int(b.sizes[i]), starts[i]
                target[a : a + n] = rows[r : r + n]
                cache.put((file_id, c), rows[r : r + n].copy())
                r += n
        at += b.rows


def gather_blocks(blocks: list[Block], out: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """Fills ``out`` with the rows the ``blocks`` were planned for.

    Args:
        blocks: one per touched shard, in the order of the requests sorted by shard.
        out: ``[n, *shape]`` array of the column's dtype.
        order: with several blocks, request ``order[k]`` is the ``k``-th row of
            the blocks taken in turn; None: the blocks' rows are the requests in order.

    Returns:
        ``out``.
    """
    n = out.shape[0]
    cached = _cache_pays(blocks, n)
    if not cached and len(blocks) == 1 and blocks[0].pos is None and out.flags.c_contiguous:
        _decode_blocks(blocks, out)
        return out
    scratch = np.empty((sum(b.rows for b in blocks), *out.shape[1:]), out.dtype)
    (_decode_cached if cached else _decode_blocks)(blocks, scratch)
    pos, at = [], 0
    for b in blocks:
        pos.append(np.arange(at, at + len(b.chunks)) if b.pos is None else b.pos + at)
        at += b.rows
    where = pos[0] if len(pos) == 1 else np.concatenate(pos)
    if order is not None:
        where = np.empty_like(where)
        where[order] = np.concatenate(pos) if len(pos) > 1 else pos[0]
    return np.take(scratch, where, axis=0, out=out, mode="clip")


def decode_chunk_range(reader: Any, first: int, last: int) -> np.ndarray:
    """Every row of chunks ``first .. last`` (inclusive) of ``reader``'s column, in one call."""
    chunks = np.arange(first, last + 1, dtype=np.int64)
    block = Block(reader, chunks, chunk_sizes(reader.index, chunks), None)
    rows = np.empty((block.rows, *reader.shape), reader.dtype)
    if _cache_pays([block], 2 * len(chunks)):
        _decode_cached([block], rows)
    else:
        _decode_blocks([block], rows)
    return rows
