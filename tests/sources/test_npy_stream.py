"""Streaming npy-from-gzip reader: round trips in small chunks, one `FormatError` naming the file for bad ones."""

from __future__ import annotations

import gzip
import io
import re
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from refusals import assert_refused

from torchrl_ext import FormatError
from torchrl_ext.sources.npy_stream import (
    MAX_DEFLATE_RATIO,
    NpyGzReader,
    copy_npy,
    load_npy_gz,
)


def _npy(arr, version=None) -> bytes:
    buf = io.BytesIO()
    if version is None:
        np.save(buf, arr, allow_pickle=arr.dtype.hasobject)
    else:
        np.lib.format.write_array(buf, arr, version=version)
    return buf.getvalue()


def _gz(path, arr, version=None):
    path.write_bytes(gzip.compress(_npy(arr, version)))
    return path


def _header_only(shape, descr="|u1") -> bytes:
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}\n".encode()
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


class _Unseekable(io.RawIOBase):
    """A network-like stream: readable, size unknown."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        return self._data.readinto(b)


@pytest.mark.parametrize("version", [(1, 0), (2, 0)])
@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
@pytest.mark.parametrize(
    "arr",
    [
        np.arange(5 * 6 * 7, dtype=np.uint8).reshape(5, 6, 7),
        np.linspace(-1, 1, 33, dtype=np.float32),
        np.arange(-4, 9, dtype=np.int32),
    ],
    ids=["uint8-3d", "float32", "int32"],
)
def test_copy_npy_writes_exact_payload(tmp_path, arr, chunk, version):
    src = _gz(tmp_path / "a.gz", arr, version)
    out = io.BytesIO()
    header = copy_npy(src, out, dtype=arr.dtype, ndim=arr.ndim, chunk_bytes=chunk)
    assert header.shape == arr.shape
    assert out.getvalue() == arr.tobytes()


def test_load_npy_gz_reads_scalar(tmp_path):
    src = _gz(tmp_path / "c.gz", np.array(123456789012, dtype=np.int64))
    value = load_npy_gz(src, ndim=0)
    assert value.dtype == np.int64 and int(value) == 123456789012


def test_truncated_gzip_names_file(tmp_path):
    src = _gz(tmp_path / "obs.gz", np.arange(4000, dtype=np.int32))
    src.write_bytes(src.read_bytes()[:-30])
    with pytest.raises(FormatError, match=r"obs\.gz: (not a valid gzip stream|truncated)"):
        copy_npy(src, io.BytesIO())


def test_garbage_is_not_gzip(tmp_path):
    src = tmp_path / "junk.gz"
    src.write_bytes(b"this is not gzip at all" * 10)
    with pytest.raises(FormatError, match=r"junk\.gz: not a valid gzip stream"):
        copy_npy(src, io.BytesIO())


def test_short_payload_reports_byte_counts(tmp_path):
    buf = io.BytesIO()
    np.save(buf, np.arange(10, dtype=np.int32))
    src = tmp_path / "short.gz"
    src.write_bytes(gzip.compress(buf.getvalue()[:-8]))
    with pytest.raises(FormatError, match=r"short\.gz: truncated npy payload: expected 40 bytes .* found 32"):
        copy_npy(src, io.BytesIO())


def test_wrong_dtype_is_refused(tmp_path):
    src = _gz(tmp_path / "a.gz", np.zeros(3, dtype=np.float64))
    with pytest.raises(FormatError, match=r"a\.gz: expected dtype int32, found float64"):
        copy_npy(src, io.BytesIO(), dtype=np.int32)


def test_wrong_ndim_is_refused(tmp_path):
    src = _gz(tmp_path / "obs.gz", np.zeros((3, 4), dtype=np.uint8))
    with pytest.raises(FormatError, match=r"obs\.gz: expected a 3-d array, found shape \(3, 4\)"):
        copy_npy(src, io.BytesIO(), ndim=3)


def test_object_arrays_are_refused(tmp_path):
    src = _gz(tmp_path / "o.gz", np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(FormatError, match=r"o\.gz: npy array has dtype '\|O', expected plain numbers .* refused"):
        copy_npy(src, io.BytesIO())


def test_trailing_data_is_refused(tmp_path):
    src = tmp_path / "t.gz"
    src.write_bytes(gzip.compress(_npy(np.arange(4, dtype=np.int32)) + b"\x00"))
    with pytest.raises(FormatError, match=r"t\.gz: unexpected data after the npy payload of shape \(4,\)"):
        load_npy_gz(src)


def test_huge_shape_in_a_tiny_file_is_refused_before_allocating(tmp_path):
    src = tmp_path / "huge.gz"
    src.write_bytes(gzip.compress(_header_only((1 << 38,))))
    size = src.stat().st_size
    assert_refused(lambda: load_npy_gz(src, max_bytes=1 << 40),
                   rf"^{re.escape(str(src))}: npy header promises {1 << 38} bytes .* more than {size} compressed "
                   rf"bytes can hold \(at most {MAX_DEFLATE_RATIO}x\)")


def test_huge_shape_in_a_stream_of_known_size_is_refused_before_allocating():
    data = gzip.compress(_header_only((200 << 20,)))
    assert_refused(lambda: load_npy_gz(io.BufferedReader(_Unseekable(data)), name="s.gz", compressed_bytes=len(data)),
                   r"^s\.gz: npy header promises 209715200 bytes .* compressed bytes can hold")


def test_huge_shape_in_a_stream_of_unknown_size_allocates_what_arrives():
    data = gzip.compress(_header_only((200 << 20,)) + bytes(3 << 20))
    assert_refused(lambda: load_npy_gz(io.BufferedReader(_Unseekable(data)), name="s.gz"),
                   r"^s\.gz: truncated npy payload: expected 209715200 bytes .* found 3145728", max_peak=16 << 20)


def test_array_over_max_bytes_is_refused(tmp_path):
    src = _gz(tmp_path / "big.gz", np.zeros(1000, np.float64))
    with pytest.raises(FormatError, match=r"big\.gz: npy header promises 8000 bytes .* expected at most 4000"):
        load_npy_gz(src, max_bytes=4000)


def test_reading_past_the_payload_is_a_caller_error(tmp_path):
    src = _gz(tmp_path / "a.gz", np.arange(4, dtype=np.int32))
    with NpyGzReader(src) as reader, pytest.raises(ValueError, match=r"asked to skip 17 bytes, only 16"):
        reader.skip(17)


@pytest.mark.parametrize("threaded", [False, True])
@settings(max_examples=100, deadline=None)
@given(cut=st.integers(0, 10**6), flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4))
def test_damaged_gzip_is_only_format_errors(threaded, cut, flips):
    arr = np.arange(3000, dtype=np.int32)
    data = bytearray(gzip.compress(_npy(arr)))
    for at, value in flips:
        data[at % len(data)] = value
    data = bytes(data[: len(data) - cut % 64])
    try:
        with NpyGzReader(io.BytesIO(data), name="d.gz", threaded=threaded) as reader:
            out = np.empty(reader.header.nbytes, np.uint8)
            reader.readinto(memoryview(out))
            reader.finish()
    except FormatError as err:
        assert str(err).startswith("d.gz: ")


def test_skips_after_a_small_first_skip_read_in_large_pieces(tmp_path):
    """A first skip of 0 bytes once fixed the scratch buffer at 1 byte: every later skip then read byte by byte."""
    arr = np.arange(300_000, dtype=np.int32)
    src = _gz(tmp_path / "a.gz", arr)
    reads = []
    with NpyGzReader(src) as reader:
        inner = reader.readinto
        reader.readinto = lambda view: (reads.append(view.nbytes), inner(view))[1]
        reader.skip(0)
        reader.skip(4 * 200_000)
        reader.readinto = inner
        tail = np.empty(100_000, np.int32)
        reader.readinto(memoryview(tail.view(np.uint8)))
        reader.finish()
    assert tail.tolist() == arr[200_000:].tolist()
    assert reads == [800_000]  # one read for the 800,000 bytes, not 800,000 reads
