"""The strict npy header parser: numpy's headers read as numpy reads them, everything else one `FormatError`."""

from __future__ import annotations

import gzip
import io
import re
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from refusals import assert_refused

from torchrl_ext import FormatError
from torchrl_ext.sources.npy_header import MAX_HEADER_BYTES, read_npy_header
from torchrl_ext.sources.npy_stream import load_npy_gz

MAGIC = b"\x93NUMPY"


def _npy(text: str, version=(1, 0), length: int | None = None, payload: bytes = b"") -> bytes:
    raw = text.encode("utf-8" if version == (3, 0) else "latin-1")
    n = len(raw) if length is None else length
    size = struct.pack("<H" if version == (1, 0) else "<I", n)
    return MAGIC + bytes(version) + size + raw + payload


def _dict(descr="'<i4'", fortran="False", shape="(3,)") -> str:
    return f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}\n"


GOOD = _dict()
HOSTILE = [
    ("lying-length-short", _npy(GOOD, length=20), r"npy header is not a dict .* unexpected"),
    ("lying-length-long", _npy(GOOD, length=len(GOOD) + 40), r"promises \d+ bytes, the file ends after"),
    ("lying-length-into-payload", _npy(GOOD, length=len(GOOD) + 4, payload=b"\x01\x00\x00\x00" * 3),
     r"unexpected '\\x01\\x00"),
    ("unterminated", _npy("{'descr': '<i4', 'fortran_order': False, 'shape': (3,"),
     r"expected an int or '\)' in the shape tuple, found the end of the header"),
    ("unterminated-string", _npy("{'descr': '<i4, 'fortran_order': False}"), r"unexpected"),
    ("list", _npy("[1, 2, 3]\n"), r"unexpected '\[1, 2, 3\]"),
    ("string", _npy("'descr'\n"), r"expected '\{', found \"'descr'\""),
    ("empty-header", _npy(""), r"expected '\{', found the end of the header"),
    ("unicode-space", _npy(GOOD.replace(", }", ",\x85}")), r"unexpected '\\x85\}"),
    ("call", _npy("dict(descr='<i4')\n"), r"unexpected \"dict\(descr"),
    ("descr-object", _npy(_dict(descr="'|O'")), r"dtype '\|O', expected plain numbers"),
    ("descr-structured", _npy(_dict(descr="[('a', '<i4')]")), r"npy header is not a dict"),
    ("descr-string", _npy(_dict(descr="'S0'")), r"dtype 'S0', expected plain numbers"),
    ("descr-datetime", _npy(_dict(descr="'<M8[ns]'")), r"dtype '<M8\[ns\]', expected plain numbers"),
    ("descr-void", _npy(_dict(descr="'|V8'")), r"dtype '\|V8', expected plain numbers"),
    ("descr-int", _npy(_dict(descr="4")), r"dtype 4, expected plain numbers"),
    ("negative-shape", _npy(_dict(shape="(-3,)")), r"shape \(-3,\), expected a tuple of at most 64 non-negative"),
    ("overflowing-shape", _npy(_dict(shape=f"({2**62}, 4)")), r"promises 73786976294838206464 bytes"),
    ("long-int", _npy(_dict(shape=f"({10**30},)")), r"an int of 31 digits"),
    ("many-dims", _npy(_dict(shape="(" + "1, " * 65 + ")")), r"expected a tuple of at most 64"),
    ("shape-not-tuple", _npy(_dict(shape="(3)")), r"shape 3, expected a tuple"),
    ("shape-list", _npy(_dict(shape="[3]")), r"unexpected '\[3\]"),
    ("shape-nested", _npy(_dict(shape="((3,),)")), r"expected an int or '\)' in the shape tuple, found '\('"),
    ("deep-parens", _npy(_dict(shape="(" * 4000 + ")" * 4000)), r"found '\('"),
    ("fortran-int", _npy(_dict(fortran="0")), r"fortran_order 0, expected True or False"),
    ("missing-key", _npy("{'descr': '<i4', 'shape': (3,)}"), r"keys \['descr', 'shape'\], expected exactly"),
    ("extra-key", _npy(_dict()[:-2] + "'x': 1}"), r"keys \['descr', 'fortran_order', 'shape', 'x'\]"),
    ("duplicate-key", _npy("{'descr': '<i4', 'descr': '<i4', 'fortran_order': False, 'shape': (3,)}"),
     r"names 'descr' twice"),
    ("bad-utf8", _npy(GOOD, version=(3, 0))[:-3] + b"\xff\xfe\n", r"not utf-8 text"),
    ("huge-header", MAGIC + b"\x02\x00" + (10**6).to_bytes(4, "little"),
     rf"header is 1000000 bytes, expected at most {MAX_HEADER_BYTES}"),
    ("cut-length", MAGIC + b"\x02\x00\x10", r"header length is cut short"),
    ("magic", b"\x93NUMPZ\x01\x00", r"magic string is not correct"),
    ("empty", b"", r"magic string is not correct; expected .* got b''"),
    ("version", MAGIC + b"\x09\x00", r"version 9\.0 is not supported"),
]


@pytest.mark.parametrize("raw, message", [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_header_is_one_format_error(raw, message):
    assert_refused(lambda: read_npy_header(io.BytesIO(raw), "x.npy"), rf"^x\.npy: .*{message}")


@pytest.mark.parametrize("raw, message", [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_header_in_gzip_file_names_the_file(tmp_path, raw, message):
    path = tmp_path / "add_count_ckpt.3.gz"
    path.write_bytes(gzip.compress(raw))
    assert_refused(lambda: load_npy_gz(path), rf"^{re.escape(str(path))}: .*{message}")


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
@pytest.mark.parametrize("fortran", [False, True])
@pytest.mark.parametrize(
    "arr",
    [np.arange(12, dtype="<i4").reshape(3, 4), np.linspace(0, 1, 5, dtype=">f8"), np.array(7, np.int64),
     np.zeros((0, 3), np.uint8), np.array([True, False]), np.arange(6, dtype=np.complex64).reshape(2, 3)],
    ids=["int32", "float64-be", "scalar", "empty", "bool", "complex"],
)
def test_numpy_headers_parse_as_numpy_reads_them(arr, fortran, version):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asfortranarray(arr) if fortran else arr, version=version)
    buf.seek(0)
    header = read_npy_header(buf)
    buf.seek(0)
    expected = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    np.lib.format.read_magic(buf)
    shape, fortran_order, dtype = expected(buf)
    assert (header.shape, header.fortran_order, header.dtype) == (shape, fortran_order, dtype)
    assert header.nbytes == arr.nbytes


def test_python2_long_suffix_is_read():
    header = read_npy_header(io.BytesIO(_npy(_dict(shape="(3L, 2L)"))))
    assert header.shape == (3, 2) and header.dtype == np.int32


def test_max_bytes_is_checked_before_the_payload():
    raw = _npy(_dict(descr="'<f8'", shape="(1000, 1000)"))
    message = r"^x\.npy: npy header promises 8000000 bytes \(shape \(1000, 1000\), float64\), expected at most 1000;"
    with pytest.raises(FormatError, match=message):
        read_npy_header(io.BytesIO(raw), "x.npy", max_bytes=1000)


# ---------------------------------------------------------------------- properties
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tail=st.binary(max_size=300), gzipped=st.booleans())
def test_random_bytes_after_the_magic_are_only_format_errors(tail, gzipped):
    raw = MAGIC + tail
    try:
        if gzipped:
            load_npy_gz(io.BytesIO(gzip.compress(raw)), name="r.npy")
        else:
            read_npy_header(io.BytesIO(raw), "r.npy")
    except FormatError as err:
        assert str(err).startswith("r.npy: ")


HEADER_ALPHABET = st.sampled_from(list("{}()[]:,'\" -0123456789LTrueFalsdcphio<>|=bf8\n\\"))
PIECES = st.sampled_from(["'descr'", "'fortran_order'", "'shape'", "'<i4'", "'|u1'", "'<f8'", "'|O'", "True",
                          "False", "(", ")", ",", ":", "{", "}", "3", "-1", "0", str(2**63), "'x'", " "])


@st.composite
def headers(draw) -> tuple[bytes, bytes]:
    """A header made of pieces of a real one (or random text), with a random or correct length, and a payload."""
    if draw(st.booleans()):
        text = "".join(draw(st.lists(PIECES, max_size=30)))
    elif draw(st.booleans()):
        descr = draw(st.sampled_from(["'<i4'", "'|u1'", "'>f8'", "'|b1'", "'<c8'", "'|O'", "'<U2'", "'<i16'"]))
        shape = draw(st.lists(st.integers(-3, 6) | st.integers(-2**70, 2**70), max_size=4))
        fortran = draw(st.sampled_from(["True", "False", "1", "None"]))
        text = _dict(descr, fortran, "(" + "".join(f"{d}, " for d in shape) + ")")
    else:
        text = "".join(draw(st.lists(HEADER_ALPHABET, max_size=80)))
    version = draw(st.sampled_from([(1, 0), (2, 0), (3, 0)]))
    length = draw(st.none() | st.integers(0, 200))
    payload = draw(st.binary(max_size=200))
    return _npy(text, version, length), payload


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=headers())
def test_hostile_headers_load_as_numpy_does_or_are_format_errors(case):
    head, payload = case
    raw = head + payload
    try:
        ours = load_npy_gz(io.BytesIO(gzip.compress(raw)), name="h.gz")
    except FormatError as err:
        assert str(err).startswith("h.gz: ")
        return
    theirs = np.load(io.BytesIO(raw), allow_pickle=False)  # safe: our reader checked the size first
    assert (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape)
    assert ours.tobytes() == theirs.tobytes()


@settings(max_examples=200, deadline=None)
@given(
    dtype=st.sampled_from(["<i4", "|u1", ">f8", "|b1"]),
    shape=st.lists(st.integers(0, 4), max_size=3),
    flips=st.lists(st.tuples(st.integers(0, 140), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_damaged_numpy_headers_load_as_numpy_does_or_are_format_errors(dtype, shape, flips):
    buf = io.BytesIO()
    np.save(buf, (np.arange(int(np.prod(shape))) % 7).astype(dtype).reshape(shape))
    raw = bytearray(buf.getvalue())
    for at, value in flips:
        raw[at % len(raw)] = value
    try:
        ours = load_npy_gz(io.BytesIO(gzip.compress(bytes(raw))), name="f.gz")
    except FormatError as err:
        assert str(err).startswith("f.gz: ")
        return
    theirs = np.load(io.BytesIO(bytes(raw)), allow_pickle=False)  # found: U+0085 taken for whitespace
    assert (ours.dtype, ours.shape, ours.tobytes()) == (theirs.dtype, theirs.shape, theirs.tobytes())


@settings(max_examples=200, deadline=None)
@given(
    dtype=st.sampled_from(["<i4", ">i2", "|u1", "<u8", "<f4", ">f8", "|b1", "<c16", "<f2", "|i1"]),
    shape=st.lists(st.integers(0, 5), max_size=4),
    version=st.sampled_from([(1, 0), (2, 0), (3, 0)]),
    seed=st.integers(0, 2**32 - 1),
)
def test_valid_arrays_load_equal_to_np_load(dtype, shape, version, seed):
    data = np.random.default_rng(seed).integers(0, 256, size=int(np.prod(shape)) * np.dtype(dtype).itemsize,
                                                dtype=np.uint8)
    arr = data.view(dtype).reshape(shape)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, version=version)
    ours = load_npy_gz(io.BytesIO(gzip.compress(buf.getvalue())), name="v.gz")
    theirs = np.load(io.BytesIO(buf.getvalue()), allow_pickle=False)
    assert (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape)
    assert ours.tobytes() == theirs.tobytes()
