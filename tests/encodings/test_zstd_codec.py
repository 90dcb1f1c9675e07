"""The zstd codec through the column writer and reader: bit-exact for every dtype and shape."""

from __future__ import annotations

import numpy as np
import pytest

from torchrl_ext.encodings import ChunkedColumnReader, ChunkedColumnWriter, Zstd, train_dictionary
from torchrl_ext.encodings.zstd_codec import ZstdCodec

DTYPES = [
    "bool", "uint8", "int8", "int16", "int32", "int64",
    "uint16", "uint32", "uint64", "float16", "float32", "float64",
]


def _values(dtype: str, shape: tuple[int, ...], rows: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    full = (rows, *shape)
    if dt == np.bool_:
        return rng.random(full) < 0.3
    if dt.kind == "f":
        out = rng.standard_normal(full).astype(dt)
        out.reshape(-1)[:3] = [np.inf, -0.0, np.nan][: out.size] if out.size >= 3 else out.reshape(-1)[:3]
        return out
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, size=full, dtype=dt, endpoint=True)


def _write(tmp_path, key, values, options, dictionary=None, pieces=(7, 1, 0)):
    writer = ChunkedColumnWriter(tmp_path, key, values.dtype, values.shape[1:], options, dictionary)
    start = 0
    for n in [*pieces, len(values)]:
        writer.append(values[start : start + n])
        start = min(start + n, len(values))
    return writer.close()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (3,), (2, 3, 5)])
def test_round_trip_bit_exact(tmp_path, dtype, shape):
    values = _values(dtype, shape, rows=37)  # 2 full chunks of 16 and a partial one of 5
    stats = _write(tmp_path, ("obs",), values, Zstd())
    assert (stats.rows, stats.chunks, stats.raw_bytes) == (37, 3, values.nbytes)
    reader = ChunkedColumnReader(tmp_path, ("obs",), dtype, shape, Zstd(), rows=37)
    got = reader.read(0, 37)
    assert got.dtype == values.dtype and got.tobytes() == values.tobytes()


@pytest.mark.parametrize("chunk_rows", [1, 4, 16, 64])
def test_gather_random_order_with_repeats(tmp_path, chunk_rows):
    values = _values("int32", (4,), rows=50)
    _write(tmp_path, ("a", "b"), values, Zstd(chunk_rows=chunk_rows))
    reader = ChunkedColumnReader(tmp_path, ("a", "b"), "int32", (4,), Zstd(chunk_rows=chunk_rows), rows=50)
    idx = np.random.default_rng(1).integers(0, 50, size=80)
    idx[:3] = [49, 0, 49]
    out = np.empty((80, 4), np.int32)
    assert reader.gather(idx, out) is out
    np.testing.assert_array_equal(out, values[idx])


@pytest.mark.parametrize(("start", "stop"), [(0, 0), (0, 1), (3, 20), (16, 32), (15, 37), (36, 37), (0, 37)])
def test_read_ranges(tmp_path, start, stop):
    values = _values("float32", (2,), rows=37)
    _write(tmp_path, ("x",), values, Zstd())
    reader = ChunkedColumnReader(tmp_path, ("x",), "float32", (2,), Zstd(), rows=37)
    np.testing.assert_array_equal(reader.read(start, stop), values[start:stop])


def test_dictionary_single_row_chunks(tmp_path, gray84_frames):
    frames = gray84_frames
    dictionary = train_dictionary(frames[:100])
    options = Zstd(chunk_rows=1, dictionary=True)
    with_dict = _write(tmp_path / "d", ("pixels",), frames, options, dictionary)
    without = _write(tmp_path / "n", ("pixels",), frames, Zstd(chunk_rows=1))
    assert with_dict.chunks == 200
    # measured on Pong 84x84: ~210 B/frame alone, ~100 B/frame with a 16 KiB dictionary
    assert with_dict.bytes < 0.8 * without.bytes
    reader = ChunkedColumnReader(tmp_path / "d", ("pixels",), "uint8", (84, 84), options, 200, dictionary)
    idx = np.random.default_rng(2).permutation(200)[:64]
    out = np.empty((64, 84, 84), np.uint8)
    np.testing.assert_array_equal(reader.gather(idx, out), frames[idx])


def test_real_frames_compress(tmp_path, gray_frames):
    stats = _write(tmp_path, ("pixels",), gray_frames, Zstd())
    assert stats.ratio > 20  # measured ~50x on 210x160 Pong frames
    reader = ChunkedColumnReader(tmp_path, ("pixels",), "uint8", (210, 160), Zstd(), 200)
    np.testing.assert_array_equal(reader.read(0, 200), gray_frames)


def test_dictionary_required(tmp_path):
    with pytest.raises(ValueError, match="`dictionary` bytes are required"):
        ChunkedColumnWriter(tmp_path, ("x",), "uint8", (4,), Zstd(dictionary=True))


def test_dictionary_refused_without_option(tmp_path):
    with pytest.raises(ValueError, match="`dictionary` was given but the encoding has dictionary=False"):
        ChunkedColumnWriter(tmp_path, ("x",), "uint8", (4,), Zstd(), dictionary=b"\0" * 300)


def test_train_dictionary_needs_samples():
    with pytest.raises(ValueError, match="at least 8 sample rows"):
        train_dictionary(np.zeros((3, 10), np.uint8))


def test_wrong_decoded_size_is_an_error():
    codec = ZstdCodec(Zstd(), np.dtype("uint8"), (4,))
    payload = codec.encode(np.zeros((3, 4), np.uint8))
    with pytest.raises(ValueError, match="frame content size is 12 bytes, expected 16"):
        codec.decode(payload, 4)
