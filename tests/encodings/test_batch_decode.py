"""A zstd column over several shards, decoded in one call, against each frame decoded on its own."""

from __future__ import annotations

import itertools
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from torchrl_ext import FormatError
from torchrl_ext.encodings import (
    ChunkedColumnReader,
    ChunkedColumnWriter,
    ChunkIndex,
    DecodedChunkCache,
    Zstd,
    chunk_file_paths,
    train_dictionary,
)
from torchrl_ext.encodings.batch_decode import ZstdColumn
from torchrl_ext.encodings.frame_bytes import frames_are_checked

KEY = ("obs",)
SHAPE = (5, 4)


def _values(rows: int, seed: int) -> np.ndarray:
    """Compressible rows, different per row."""
    base = np.arange(rows * 20, dtype=np.int64).reshape(rows, *SHAPE) // 7 + seed * 1000
    return (base % 251).astype(np.uint8)


def _write(root: Path, sizes: list[int], options: Zstd, dictionary: bytes | None) -> list[np.ndarray]:
    values = []
    for s, n in enumerate(sizes):
        v = _values(n, s)
        with ChunkedColumnWriter(root / f"{s:03d}", KEY, np.uint8, SHAPE, options, dictionary) as writer:
            writer.append(v)
        values.append(v)
    return values


def _readers(root: Path, sizes: list[int], options: Zstd, dictionary: bytes | None, **kw) -> list:
    return [ChunkedColumnReader(root / f"{s:03d}", KEY, np.uint8, SHAPE, options, n, dictionary, **kw)
            for s, n in enumerate(sizes)]


def _plain(root: Path, sizes: list[int], dictionary: bytes | None) -> list[np.ndarray]:
    """Each shard's rows decoded chunk by chunk with the plain zstandard API."""
    dctx = zstandard.ZstdDecompressor(
        dict_data=zstandard.ZstdCompressionDict(dictionary) if dictionary else None)
    out = []
    for s in range(len(sizes)):
        chunks, index = chunk_file_paths(root / f"{s:03d}", KEY)
        offsets = ChunkIndex.from_bytes(index.read_bytes(), "test").offsets.tolist()
        data = chunks.read_bytes()
        parts = [np.frombuffer(dctx.decompress(data[a:b]), np.uint8) for a, b in itertools.pairwise(offsets)]
        out.append(np.concatenate(parts).reshape(-1, *SHAPE) if parts else np.zeros((0, *SHAPE), np.uint8))
    return out


def _gather(column: ZstdColumn, sizes: list[int], rows: np.ndarray) -> np.ndarray:
    """Global rows through the column, grouped by shard as a route groups them."""
    offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    shard = np.searchsorted(offsets, rows, side="right") - 1
    order = np.argsort(shard, kind="stable")
    sorted_shard = shard[order]
    cuts = np.flatnonzero(sorted_shard[1:] != sorted_shard[:-1]) + 1
    bounds = np.concatenate(([0], cuts, [rows.size])).astype(np.int64)
    shards = sorted_shard[bounds[:-1]] if rows.size else np.zeros(1, np.int64)
    out = np.full((rows.size, *SHAPE), 7, np.uint8)
    return column.gather(shards, bounds, rows[order] - offsets[sorted_shard], order, out)


@pytest.fixture(scope="module")
def dictionary() -> bytes:
    return train_dictionary(np.concatenate([_values(40, s) for s in range(4)]), dict_size=1024)


@st.composite
def _cases(draw):
    sizes = draw(st.lists(st.integers(1, 30), min_size=1, max_size=5))
    total = sum(sizes)
    kind = draw(st.sampled_from(["random", "sorted", "slices", "stacks", "empty"]))
    if kind == "slices":
        starts = draw(st.lists(st.integers(0, total - 1), min_size=1, max_size=3))
        rows = [r for s in starts for r in range(s, min(s + draw(st.integers(1, 12)), total))]
    elif kind == "stacks":  # rows t-3 .. t+1 of a few t: neighbours and repeats
        ts = draw(st.lists(st.integers(0, total - 1), min_size=1, max_size=6))
        rows = [min(max(t + k, 0), total - 1) for t in ts for k in range(-3, 2)]
    elif kind == "empty":
        rows = []
    else:
        rows = draw(st.lists(st.integers(0, total - 1), min_size=1, max_size=40))
        rows = sorted(rows) if kind == "sorted" else rows
    chunk_rows = draw(st.sampled_from([1, 1, 3]))
    return sizes, np.asarray(rows, np.int64), chunk_rows, draw(st.booleans()), draw(st.sampled_from([1, 3])), \
        draw(st.sampled_from([None, 1 << 20]))


@settings(max_examples=80, deadline=None)
@given(_cases())
def test_batches_equal_each_frame_decoded_on_its_own(dictionary, case):
    sizes, rows, chunk_rows, use_dict, threads, cache = case
    options = Zstd(chunk_rows=chunk_rows, dictionary=use_dict)
    dic = dictionary if use_dict else None
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        values = _write(root, sizes, options, dic)
        plain = _plain(root, sizes, dic)
        for v, p in zip(values, plain):
            np.testing.assert_array_equal(p, v)
        cache_obj = None if cache is None else DecodedChunkCache(cache)
        column = ZstdColumn(_readers(root, sizes, options, dic, cache=cache_obj, threads=threads))
        flat = np.concatenate(plain)
        got = _gather(column, sizes, rows)
        np.testing.assert_array_equal(got, flat[rows])
        again = _gather(column, sizes, rows)  # a second batch (cache hits, reused scratch) gives the same
        np.testing.assert_array_equal(again, flat[rows])


def test_shards_with_listed_and_regular_chunk_grids_read_together(tmp_path):
    values = [_values(10, 0), _values(7, 1)]
    with ChunkedColumnWriter(tmp_path / "000", KEY, np.uint8, SHAPE, Zstd(chunk_rows=4)) as writer:
        writer.append(values[0][:3])
        writer.cut()  # chunks of 3, 4 and 3 rows: the index lists their first rows
        writer.append(values[0][3:])
    with ChunkedColumnWriter(tmp_path / "001", KEY, np.uint8, SHAPE, Zstd(chunk_rows=4)) as writer:
        writer.append(values[1])
    readers = _readers(tmp_path, [10, 7], Zstd(chunk_rows=4), None)
    assert readers[0].index.row_starts is not None and readers[1].index.row_starts is None
    rows = np.array([16, 0, 3, 9, 10, 2, 13, 3])
    np.testing.assert_array_equal(_gather(ZstdColumn(readers), [10, 7], rows), np.concatenate(values)[rows])


def test_one_row_chunks_never_touch_the_cache(tmp_path):
    sizes = [20, 15]
    cache = DecodedChunkCache(1 << 20)
    _write(tmp_path, sizes, Zstd(chunk_rows=1), None)
    column = ZstdColumn(_readers(tmp_path, sizes, Zstd(chunk_rows=1), None, cache=cache))
    _gather(column, sizes, np.array([3, 3, 4, 5, 6, 30, 31, 32]))
    assert (cache.hits, cache.misses, len(cache)) == (0, 0, 0)


def test_runs_over_multi_row_chunks_go_through_the_cache(tmp_path):
    sizes = [40]
    cache = DecodedChunkCache(1 << 20)
    values = _write(tmp_path, sizes, Zstd(chunk_rows=8), None)
    column = ZstdColumn(_readers(tmp_path, sizes, Zstd(chunk_rows=8), None, cache=cache))
    rows = np.arange(4, 20)
    np.testing.assert_array_equal(_gather(column, sizes, rows), values[0][rows])
    assert (cache.misses, len(cache)) == (3, 3)  # chunks 0, 1, 2 decoded once each
    np.testing.assert_array_equal(_gather(column, sizes, rows), values[0][rows])
    assert cache.hits == 3


def test_uniform_random_rows_over_multi_row_chunks_skip_the_cache(tmp_path):
    sizes = [64]
    cache = DecodedChunkCache(1 << 20)
    values = _write(tmp_path, sizes, Zstd(chunk_rows=8), None)
    column = ZstdColumn(_readers(tmp_path, sizes, Zstd(chunk_rows=8), None, cache=cache))
    rows = np.array([1, 9, 17, 25, 33])  # one row per chunk
    np.testing.assert_array_equal(_gather(column, sizes, rows), values[0][rows])
    assert (cache.hits, cache.misses) == (0, 0)


@pytest.mark.parametrize("use_dict", [False, True])
def test_every_flipped_byte_of_a_frame_is_a_format_error_naming_the_file(tmp_path, dictionary, use_dict):
    options = Zstd(chunk_rows=1, dictionary=use_dict)
    dic = dictionary if use_dict else None
    sizes = [6]
    _write(tmp_path, sizes, options, dic)
    chunks, index = chunk_file_paths(tmp_path / "000", KEY)
    offsets = ChunkIndex.from_bytes(index.read_bytes(), "test").offsets
    good = chunks.read_bytes()
    rows = np.array([5, 2, 3, 0])  # chunk 3 in the middle of the batch, its frame not the last one
    for pos in range(int(offsets[3]), int(offsets[4])):
        bad = bytearray(good)
        bad[pos] ^= 0xFF
        chunks.write_bytes(bytes(bad))
        reader = _readers(tmp_path, sizes, options, dic)[0]
        with pytest.raises(FormatError, match=r"000/obs\.chunks \(column \('obs',\)\): chunk 3 of 6 fails its crc32"):
            reader.gather(rows, np.empty((4, *SHAPE), np.uint8))
        reader.close()
    chunks.write_bytes(good)


def test_flipped_byte_of_the_last_frame_of_a_batch(tmp_path):
    sizes = [5, 5]
    _write(tmp_path, sizes, Zstd(chunk_rows=1), None)
    chunks, _ = chunk_file_paths(tmp_path / "001", KEY)
    data = bytearray(chunks.read_bytes())
    data[-1] ^= 0x01  # the content checksum of shard 1's last frame
    chunks.write_bytes(bytes(data))
    column = ZstdColumn(_readers(tmp_path, sizes, Zstd(chunk_rows=1), None))
    with pytest.raises(FormatError, match=r"001/obs\.chunks .*chunk 4 of 5 fails its crc32"):
        _gather(column, sizes, np.array([0, 6, 9]))


def _rewrite_chunks(shard: Path, frames: list[bytes], rows: list[int], chunk_rows: int) -> None:
    """A column pair whose index matches ``frames`` (offsets and crc32s): only the frames can be wrong."""
    chunks, index = chunk_file_paths(shard, KEY)
    offsets = np.concatenate(([0], np.cumsum([len(f) for f in frames]))).astype(np.int64)
    crcs = np.array([zlib.crc32(f) for f in frames], np.uint32)
    row_bytes = int(np.prod(SHAPE))
    chunks.write_bytes(b"".join(frames))
    index.write_bytes(ChunkIndex.from_chunk_rows("zstd", row_bytes, chunk_rows, rows, offsets, crcs).to_bytes())


def test_frames_without_a_content_checksum_are_read_through_their_crc32(tmp_path):
    values = _values(6, 3)
    (tmp_path / "000").mkdir()
    cctx = zstandard.ZstdCompressor(write_checksum=False)
    frames = [cctx.compress(values[i : i + 2].tobytes()) for i in range(0, 6, 2)]
    _rewrite_chunks(tmp_path / "000", frames, [2, 2, 2], 2)
    reader = _readers(tmp_path, [6], Zstd(chunk_rows=2), None)[0]
    rows = np.array([5, 0, 3, 3])
    np.testing.assert_array_equal(reader.gather(rows, np.empty((4, *SHAPE), np.uint8)), values[rows])
    np.testing.assert_array_equal(reader.read(1, 6), values[1:6])


def test_a_frame_holding_another_chunks_rows_is_refused(tmp_path):
    """Checksums and crc32s all match, but chunk 0's frame holds three rows and chunk 1's one."""
    values = _values(4, 1)
    (tmp_path / "000").mkdir()
    cctx = zstandard.ZstdCompressor(write_checksum=True)
    frames = [cctx.compress(values[:3].tobytes()), cctx.compress(values[3:].tobytes())]
    _rewrite_chunks(tmp_path / "000", frames, [2, 2], 2)
    reader = _readers(tmp_path, [4], Zstd(chunk_rows=2), None)[0]
    with pytest.raises(FormatError, match=r"chunk 0 of 2 does not decode \(frame content size is 60 bytes, expected 40\)"):
        reader.gather(np.array([0, 3]), np.empty((2, *SHAPE), np.uint8))


def test_shards_of_another_dictionary_are_refused(tmp_path, dictionary):
    _write(tmp_path, [3], Zstd(dictionary=True), dictionary)
    _write(tmp_path / "b", [3], Zstd(), None)
    a = _readers(tmp_path, [3], Zstd(dictionary=True), dictionary)[0]
    b = _readers(tmp_path / "b", [3], Zstd(), None)[0]
    with pytest.raises(ValueError, match="`readers` must share one encoding and dictionary"):
        ZstdColumn([a, b])


@pytest.mark.parametrize("write_checksum, content, expected", [
    (True, 300, True), (True, 301, False), (False, 300, False),
])
def test_frame_headers_are_checked_together(write_checksum, content, expected):
    frame = zstandard.ZstdCompressor(write_checksum=write_checksum).compress(bytes(range(100)) * 3)
    data = np.frombuffer(frame * 3, np.uint8)
    starts = np.arange(3) * len(frame)
    lengths = np.full(3, len(frame))
    assert frames_are_checked(data, starts, lengths, np.array([300, 300, content])) is expected


def test_a_frame_without_its_magic_number_fails_the_header_check():
    frame = bytearray(zstandard.ZstdCompressor(write_checksum=True).compress(b"x" * 50))
    frame[0] ^= 0x01
    assert not frames_are_checked(np.frombuffer(bytes(frame), np.uint8), np.array([0]), np.array([len(frame)]),
                                  np.array([50]))


def test_a_frame_cut_short_fails_the_header_check():
    frame = zstandard.ZstdCompressor(write_checksum=True).compress(b"x" * 50)
    assert not frames_are_checked(np.frombuffer(frame[:8], np.uint8), np.array([0]), np.array([8]), np.array([50]))
