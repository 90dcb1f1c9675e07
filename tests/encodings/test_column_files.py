"""The chunked column file pair: layout, damaged and truncated files, pickling, argument checks."""

from __future__ import annotations

import pickle
import zlib

import numpy as np
import pytest

from torchrl_ext.encodings import (
    ChunkedColumnReader,
    ChunkedColumnWriter,
    ChunkIndex,
    DecodedChunkCache,
    Video,
    Zstd,
    chunk_file_paths,
)
from torchrl_ext.encodings.chunk_format import index_size
from torchrl_ext.format import FormatError

KEY = ("next", "obs")
OPTIONS = Zstd(chunk_rows=4)


@pytest.fixture
def values() -> np.ndarray:
    return np.arange(30 * 6, dtype=np.int16).reshape(30, 6)  # 7 full chunks of 4 rows + 2 rows


@pytest.fixture
def shard(tmp_path, values):
    with ChunkedColumnWriter(tmp_path, KEY, np.int16, (6,), OPTIONS) as writer:
        writer.append(values)
    return tmp_path


def _open(shard, rows=30, **kwargs):
    return ChunkedColumnReader(shard, KEY, np.int16, (6,), OPTIONS, rows, **kwargs)


def test_layout(shard):
    chunks, index = chunk_file_paths(shard, KEY)
    assert chunks == shard / "next" / "obs.chunks" and index == shard / "next" / "obs.index"
    assert index.stat().st_size == index_size(8) == 52 + 12 * 8
    parsed = ChunkIndex.from_bytes(index.read_bytes(), "test")
    assert (parsed.codec, parsed.rows, parsed.row_bytes, parsed.chunk_rows, parsed.n_chunks) == ("zstd", 30, 12, 4, 8)
    assert parsed.offsets[0] == 0 and parsed.offsets[-1] == chunks.stat().st_size
    data = chunks.read_bytes()
    assert [zlib.crc32(data[a:b]) for a, b in zip(parsed.offsets[:-1], parsed.offsets[1:])] == parsed.crcs.tolist()
    assert index.read_bytes()[:8] == b"\x93CHIDX\x01\x00"


def test_stats_checksum_covers_both_files(tmp_path, values):
    writer = ChunkedColumnWriter(tmp_path, KEY, np.int16, (6,), OPTIONS)
    writer.append(values)
    stats = writer.close()
    chunks, index = chunk_file_paths(tmp_path, KEY)
    both = chunks.read_bytes() + index.read_bytes()
    assert (stats.bytes, stats.crc32, stats.raw_bytes) == (len(both), zlib.crc32(both), values.nbytes)


def test_empty_column(tmp_path):
    ChunkedColumnWriter(tmp_path, ("x",), np.float32, (), OPTIONS).close()
    reader = ChunkedColumnReader(tmp_path, ("x",), np.float32, (), OPTIONS, 0)
    assert reader.n_chunks == 0 and reader.read(0, 0).shape == (0,)
    assert reader.gather(np.empty(0, np.int64), np.empty(0, np.float32)).shape == (0,)


@pytest.mark.parametrize("byte", [0, 7, -1])
def test_flipped_chunk_byte_names_the_chunk(shard, byte):
    chunks, index = chunk_file_paths(shard, KEY)
    offsets = ChunkIndex.from_bytes(index.read_bytes(), "test").offsets
    data = bytearray(chunks.read_bytes())
    chunk = 5
    pos = int(offsets[chunk]) + byte if byte >= 0 else int(offsets[chunk + 1]) + byte
    data[pos] ^= 0x10
    chunks.write_bytes(bytes(data))
    reader = _open(shard)
    np.testing.assert_array_equal(reader.read(0, 20), np.arange(120, dtype=np.int16).reshape(20, 6))
    with pytest.raises(FormatError, match=r"obs\.chunks \(column \('next', 'obs'\)\): chunk 5 of 8 fails its crc32"):
        reader.read(18, 24)
    with pytest.raises(FormatError, match="chunk 5 of 8 .*re-write the shard or verify it"):
        reader.gather(np.array([1, 21]), np.empty((2, 6), np.int16))
    with pytest.raises(FormatError, match="chunk 5 of 8"):
        reader.verify()


def test_flipped_video_byte_is_detected(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, size=(12, 16, 16), dtype=np.uint8)
    pytest.importorskip("av")
    with ChunkedColumnWriter(tmp_path, ("pixels",), np.uint8, (16, 16), Video(gop=4)) as writer:
        writer.append(frames)
    chunks, _ = chunk_file_paths(tmp_path, ("pixels",))
    data = bytearray(chunks.read_bytes())
    data[-5] ^= 0x01
    chunks.write_bytes(bytes(data))
    reader = ChunkedColumnReader(tmp_path, ("pixels",), np.uint8, (16, 16), Video(gop=4), 12)
    with pytest.raises(FormatError, match="chunk 2 of 3 fails its crc32 check"):
        reader.read(0, 12)


def test_decode_error_is_a_format_error(shard):
    """A chunk whose crc matches but whose payload does not decode (index rewritten to match)."""
    chunks, index = chunk_file_paths(shard, KEY)
    parsed = ChunkIndex.from_bytes(index.read_bytes(), "test")
    data = bytearray(chunks.read_bytes())
    start = int(parsed.offsets[2])
    data[start : start + 4] = b"\0\0\0\0"  # break the zstd magic number
    crcs = parsed.crcs.copy()
    crcs[2] = zlib.crc32(bytes(data[start : int(parsed.offsets[3])]))
    chunks.write_bytes(bytes(data))
    index.unlink()
    index.write_bytes(ChunkIndex(parsed.codec, 30, 12, 4, parsed.offsets, crcs).to_bytes())
    with pytest.raises(FormatError, match=r"chunk 2 of 8 does not decode \(zstd"):
        _open(shard).read(8, 12)


def test_truncated_chunks_file(shard):
    chunks, _ = chunk_file_paths(shard, KEY)
    size = chunks.stat().st_size
    chunks.write_bytes(chunks.read_bytes()[:-3])
    with pytest.raises(FormatError, match=f"expected {size} bytes from the index, found {size - 3}; the file is truncated"):
        _open(shard)


@pytest.mark.parametrize("keep", [0, 10, 40, 100, index_size(8) - 1])
def test_truncated_index(shard, keep):
    _, index = chunk_file_paths(shard, KEY)
    index.write_bytes(index.read_bytes()[:keep])
    with pytest.raises(FormatError, match="truncated"):
        _open(shard)


def test_index_too_long(shard):
    _, index = chunk_file_paths(shard, KEY)
    index.write_bytes(index.read_bytes() + b"\0")
    with pytest.raises(FormatError, match=f"index of 8 chunks must be {index_size(8)} bytes, found {index_size(8) + 1}"):
        _open(shard)
    largest = index_size(30, irregular=True)  # 30 one-row chunks, each listed
    index.write_bytes(b"\0" * (largest + 1))
    with pytest.raises(FormatError, match=f"index of 30 rows must be at most {largest} bytes"):
        _open(shard)


@pytest.mark.parametrize(("pos", "match"), [(0, "the magic string is not correct"), (6, "index version 0 is not"), (50, "index crc32 mismatch")])
def test_damaged_index(shard, pos, match):
    _, index = chunk_file_paths(shard, KEY)
    data = bytearray(index.read_bytes())
    data[pos] ^= 0x01
    index.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=match):
        _open(shard)


def test_missing_files(shard):
    chunks, index = chunk_file_paths(shard, KEY)
    chunks.unlink()
    with pytest.raises(FormatError, match="chunks file is missing"):
        _open(shard)
    index.unlink()
    with pytest.raises(FormatError, match="index file is missing; expected 148 bytes for 30 rows"):
        _open(shard)


def test_rows_mismatch(shard):
    with pytest.raises(FormatError, match=r"\('zstd', 30, 12, 4\), the manifest expects \('zstd', 28, 12, 4\)"):
        _open(shard, rows=28)
    with pytest.raises(FormatError, match=r"index describes \(codec, rows, row_bytes, chunk_rows\)=\('zstd', 30, 12, 4\), the manifest expects \('zstd', 31, 12, 4\)"):
        _open(shard, rows=31)


def test_options_mismatch(shard):
    with pytest.raises(FormatError, match=r"\('zstd', 30, 12, 4\), the manifest expects \('zstd', 30, 12, 8\)"):
        ChunkedColumnReader(shard, KEY, np.int16, (6,), Zstd(chunk_rows=8), 30)


def test_pickle_round_trip(shard, values):
    cache = DecodedChunkCache(1 << 20)
    reader = _open(shard, cache=cache)
    reader.read(0, 8)
    assert len(cache) == 2
    clone = pickle.loads(pickle.dumps(reader))
    assert clone.chunks_path == reader.chunks_path and clone.options == OPTIONS
    assert clone.cache is not cache and clone.cache.max_bytes == 1 << 20 and len(clone.cache) == 0
    idx = np.array([29, 3, 3, 17])
    np.testing.assert_array_equal(clone.gather(idx, np.empty((4, 6), np.int16)), values[idx])


def test_writer_refuses_existing_files(shard):
    with pytest.raises(FileExistsError, match="obs.chunks"):
        ChunkedColumnWriter(shard, KEY, np.int16, (6,), OPTIONS)


def test_writer_abort_removes_files(tmp_path):
    with pytest.raises(RuntimeError, match="stop"):
        with ChunkedColumnWriter(tmp_path, KEY, np.int16, (6,), OPTIONS) as writer:
            writer.append(np.zeros((5, 6), np.int16))
            raise RuntimeError("stop")
    assert not any(p.exists() for p in chunk_file_paths(tmp_path, KEY))


@pytest.mark.parametrize(
    ("rows", "match"),
    [(np.zeros((3, 5), np.int16), r"shape \[n, \*\(6,\)\]"), (np.zeros((3, 6), np.int32), "dtype int16"), (np.zeros(6, np.int16), "got shape")],
)
def test_writer_checks_rows(tmp_path, rows, match):
    writer = ChunkedColumnWriter(tmp_path, KEY, np.int16, (6,), OPTIONS)
    with pytest.raises(ValueError, match=match):
        writer.append(rows)


def test_writer_refuses_raw_and_bad_columns(tmp_path):
    with pytest.raises(ValueError, match="'raw', which is not chunked"):
        ChunkedColumnWriter(tmp_path, KEY, np.int16, (6,), "raw")
    with pytest.raises(ValueError, match="needs uint8 frames"):
        ChunkedColumnWriter(tmp_path, KEY, np.int16, (6, 6), "video")


def test_closed_writer(tmp_path):
    writer = ChunkedColumnWriter(tmp_path, KEY, np.int16, (6,), OPTIONS)
    writer.close()
    with pytest.raises(ValueError, match="the writer is closed"):
        writer.append(np.zeros((1, 6), np.int16))


@pytest.mark.parametrize(
    ("idx", "out", "error", "match"),
    [
        (np.array([0, 30]), np.empty((2, 6), np.int16), IndexError, r"must lie in \[0, 30\), got values in \[0, 30\]"),
        (np.array([-1]), np.empty((1, 6), np.int16), IndexError, "must lie in"),
        (np.array([0.5]), np.empty((1, 6), np.int16), TypeError, "1-d int array"),
        (np.array([[0]]), np.empty((1, 6), np.int16), TypeError, "1-d int array"),
        (np.array([0, 1]), np.empty((2, 5), np.int16), ValueError, r"`out` must have shape \(2, 6\)"),
        (np.array([0, 1]), np.empty((2, 6), np.int32), ValueError, "dtype int16"),
    ],
)
def test_gather_checks_arguments(shard, idx, out, error, match):
    with pytest.raises(error, match=match):
        _open(shard).gather(idx, out)


@pytest.mark.parametrize(("start", "stop"), [(-1, 3), (5, 4), (0, 31)])
def test_read_checks_range(shard, start, stop):
    with pytest.raises(IndexError, match="must satisfy 0 <= start <= stop <= 30"):
        _open(shard).read(start, stop)


def test_reader_arguments(shard):
    with pytest.raises(ValueError, match="`threads` must be a positive int"):
        _open(shard, threads=0)
    with pytest.raises(ValueError, match="`rows` must be an int >= 0"):
        _open(shard, rows=-1)
    with pytest.raises(TypeError, match="`cache` must be a DecodedChunkCache"):
        _open(shard, cache={})


def test_bad_key():
    with pytest.raises(ValueError, match="`key` must be a non-empty tuple of plain names"):
        chunk_file_paths("d", ("..", "x"))


@pytest.fixture
def irregular(tmp_path, values):
    """Chunks of 3, 4, 3, 4, 4, 4, 4, 4 rows: cut after rows 3 and 10."""
    with ChunkedColumnWriter(tmp_path, KEY, np.int16, (6,), OPTIONS) as writer:
        writer.append(values[:3])
        writer.cut()
        writer.append(values[3:10])
        writer.cut()
        writer.cut()  # nothing buffered: no empty chunk
        writer.append(values[10:])
    return tmp_path


def test_irregular_grid_layout_and_reads(irregular, values):
    _, index = chunk_file_paths(irregular, KEY)
    data = index.read_bytes()
    assert data[:8] == b"\x93CHIDX\x02\x00" and len(data) == index_size(8, irregular=True) == 60 + 20 * 8
    parsed = ChunkIndex.from_bytes(data, "test")
    assert parsed.row_starts.tolist() == [0, 3, 7, 10, 14, 18, 22, 26, 30]
    reader = _open(irregular)
    assert np.array_equal(reader.read(0, 30), values) and np.array_equal(reader.read(2, 11), values[2:11])
    rows = np.array([29, 0, 3, 2, 9, 10, 6, 6])
    assert np.array_equal(reader.gather(rows, np.empty((8, 6), np.int16)), values[rows])
    prefix = reader.encoded_prefix(12)  # chunks ending at 3, 7, 10; the one of row 12 is not whole
    assert prefix.rows == (3, 4, 3) and len(prefix) == 10


def _rewrite(index, data: bytes) -> None:
    index.write_bytes(data[:-4] + zlib.crc32(data[:-4]).to_bytes(4, "little"))


def test_bad_row_starts_are_refused(irregular):
    _, index = chunk_file_paths(irregular, KEY)
    data = bytearray(index.read_bytes())
    starts = 40 + 8 * 9  # after the header and the offsets of 8 chunks
    data[starts + 8 : starts + 16] = (8).to_bytes(8, "little")  # chunk 0 of 8 rows, more than chunk_rows=4
    _rewrite(index, bytes(data))
    with pytest.raises(FormatError, match=r"chunk row starts must go from 0 to 30 in steps of 1..4 rows"):
        _open(irregular)


def test_unknown_index_version_is_refused(irregular):
    _, index = chunk_file_paths(irregular, KEY)
    data = bytearray(index.read_bytes())
    data[6] = 3
    _rewrite(index, bytes(data))
    with pytest.raises(FormatError, match=r"index version 3 is not supported, this reader knows 1 and 2"):
        _open(irregular)
