"""Streaming npy-from-gzip reader: round trips in small chunks and clear errors on bad files."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pytest

from torchrl_ext.sources.npy_stream import copy_npy, load_npy_gz, read_npy_header


def _gz(path, arr, version=None):
    buf = io.BytesIO()
    if version is None:
        np.save(buf, arr, allow_pickle=True)
    else:
        np.lib.format.write_array(buf, arr, version=version)
    path.write_bytes(gzip.compress(buf.getvalue()))
    return path


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
    with pytest.raises(ValueError, match=r"obs\.gz: (not a valid gzip stream|truncated)"):
        copy_npy(src, io.BytesIO())


def test_garbage_is_not_gzip(tmp_path):
    src = tmp_path / "junk.gz"
    src.write_bytes(b"this is not gzip at all" * 10)
    with pytest.raises(ValueError, match=r"junk\.gz: not a valid gzip stream"):
        copy_npy(src, io.BytesIO())


def test_short_payload_reports_byte_counts(tmp_path):
    buf = io.BytesIO()
    np.save(buf, np.arange(10, dtype=np.int32))
    src = tmp_path / "short.gz"
    src.write_bytes(gzip.compress(buf.getvalue()[:-8]))
    with pytest.raises(ValueError, match=r"short\.gz: truncated npy payload: expected 40 bytes .* found 32"):
        copy_npy(src, io.BytesIO())


def test_wrong_dtype_is_refused(tmp_path):
    src = _gz(tmp_path / "a.gz", np.zeros(3, dtype=np.float64))
    with pytest.raises(ValueError, match=r"a\.gz: expected dtype int32, found float64"):
        copy_npy(src, io.BytesIO(), dtype=np.int32)


def test_wrong_ndim_is_refused(tmp_path):
    src = _gz(tmp_path / "obs.gz", np.zeros((3, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"obs\.gz: expected a 3-d array, found shape \(3, 4\)"):
        copy_npy(src, io.BytesIO(), ndim=3)


def test_object_arrays_are_refused(tmp_path):
    src = _gz(tmp_path / "o.gz", np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(ValueError, match=r"objects or fields\); refused"):
        copy_npy(src, io.BytesIO())


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"\x93NUMPZ\x01\x00", "magic string is not correct"),
        (b"\x93NUMPY\x09\x00", "version 9.0 is not supported"),
        (b"\x93NUMPY\x02\x00" + (10**6).to_bytes(4, "little"), r"not a readable npy header \(header is 1000000 bytes, expected at most"),
        (b"\x93NUMPY\x01\x00\x10\x00{'descr': 1}    ", r"not a readable npy header \(Header does not contain the correct keys"),
    ],
    ids=["magic", "version", "huge-header", "bad-dict"],
)
def test_bad_headers_are_refused(raw, message):
    with pytest.raises(ValueError, match=message):
        read_npy_header(io.BytesIO(raw), "x.npy")
