"""Hostile pickles built only from allowed names: each is one FormatError naming the file, fast, nothing forged.

The cases are relatives of each class, not one example: forged dtypes (object
fields, cleared flags, records, subarrays), arrays and tensors larger than
their bytes, sizes to allocate, shared references standing for billions of
values, deep nesting, unhashable keys, decompression bombs, random bytes.
"""

from __future__ import annotations

import bz2
import pickle
import time
from collections import OrderedDict

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchrl_ext import FormatError
from torchrl_ext.sources.safe_pickle import MAX_RATIO, safe_load, safe_loads

RECONSTRUCT = np.arange(1).__reduce__()[0]  # numpy's own _reconstruct, whatever its module path
SCALAR = np.float64(0).__reduce__()[0]  # numpy's scalar()
REBUILD_TENSOR, (STORAGE, *_) = torch.arange(3).__reduce_ex__(4)  # torch's rebuild function and a 3-element storage


class Reduce:
    """Pickles as ``fn(*args)`` then, with ``state``, ``BUILD`` (``__setstate__``)."""

    def __init__(self, fn, args, state=None):
        self.fn, self.args, self.state = fn, args, state

    def __reduce__(self):
        return (self.fn, self.args) if self.state is None else (self.fn, self.args, self.state)


def _dtype(descr, state=None):
    return Reduce(np.dtype, (descr, False, True), state or np.dtype(descr).__reduce__()[2])


def _array(shape, dtype, data):
    return Reduce(RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, shape, dtype, False, data))


def _nested_shared(levels):
    x = [0]
    for _ in range(levels):
        x = [x, x]
    return x


def _deep_list(n):
    return b"\x80\x02" + b"]" * n + b"a" * (n - 1) + b"."  # EMPTY_LIST n times, then APPEND each into the one below


def _tensor_view(size, offset=0, requires_grad=False):
    return Reduce(REBUILD_TENSOR, (STORAGE, offset, size, (1,) * len(size), requires_grad, OrderedDict()))


HOSTILE = {
    "object dtype": (lambda: pickle.dumps(_array((1,), _dtype("O"), b"\0" * 8)), r"dtype 'O' is not a plain dtype"),
    "void dtype": (lambda: pickle.dumps(_dtype("V8")), r"dtype 'V8' is not a plain dtype"),
    "record dtype string": (lambda: pickle.dumps(_dtype("i4,O")), r"is not a plain dtype"),
    "subarray dtype": (lambda: pickle.dumps(_dtype("(2,)f8")), r"is not a plain dtype"),
    "flags cleared by state": (lambda: pickle.dumps(_dtype("f8", (3, "<", None, None, None, -1, -1, 63))),
                               r"state .* numpy never writes"),
    "fields set by state": (lambda: pickle.dumps(_dtype("f8", (3, "<", None, ("a",), {"a": (_dtype("f8"), 0)},
                                                              8, 8, 63))), r"state .* numpy never writes"),
    "array larger than its bytes": (lambda: pickle.dumps(_array((1 << 40,), _dtype("u1"), b"\0" * 8)),
                                    r"needs 1099511627776 bytes, the pickle gives 8"),
    "negative shape": (lambda: pickle.dumps(_array((-1,), _dtype("u1"), b"")), r"ints >= 0"),
    "overflowing shape": (lambda: pickle.dumps(_array((1 << 62, 1 << 62), _dtype("f8"), b"")), r"needs \d+ bytes"),
    "array data as a list": (lambda: pickle.dumps(_array((1,), _dtype("u1"), [0])), r"array data must be bytes"),
    "scalar of the wrong size": (lambda: pickle.dumps(Reduce(SCALAR, (_dtype("f8"), b"\0"))), r"scalar needs 8 bytes"),
    "bytearray of a size": (lambda: pickle.dumps(Reduce(bytearray, (4 << 30,))), r"bytearray is rebuilt from bytes"),
    "set of a size": (lambda: pickle.dumps(Reduce(set, (10**9,))), r"set is rebuilt from a list"),
    "shared references": (lambda: pickle.dumps(_nested_shared(28)), r"stands for more than \d+ values"),
    "deep nesting": (lambda: _deep_list(300_000), r"nests deeper than 100 levels"),
    "unhashable key": (lambda: b"\x80\x02}]Ns.", r"TypeError: unhashable"),
    "tensor view past its storage": (lambda: pickle.dumps(_tensor_view((100,))), r"reaches element 99; its storage holds 3"),
    "tensor view offset past its storage": (lambda: pickle.dumps(_tensor_view((2,), offset=2)), r"reaches element 3"),
    "tensor needing grad": (lambda: pickle.dumps(_tensor_view((3,), requires_grad=True)), r"no requires_grad"),
    "truncated bytes8": (lambda: b"\x80\x04\x8e" + (1 << 40).to_bytes(8, "little") + b"abc", r"truncated"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_pickle_is_one_format_error_naming_the_file(case):
    make, message = HOSTILE[case]
    data = make()
    t0 = time.monotonic()
    with pytest.raises(FormatError, match=rf"^hostile\.pkl: not a readable pickle of plain data \(.*{message}"):
        safe_loads(data, "hostile.pkl")
    assert time.monotonic() - t0 < 10


def test_plain_values_still_round_trip():
    value = {"frames": np.arange(24, dtype=">u2").reshape(2, 3, 4), "f": np.asfortranarray(np.eye(3)),
             "text": np.array(["ab", "c"]), "raw": np.array([b"x", b"yz"]), "t": torch.arange(6).view(2, 3)[:, 1:],
             "c": np.complex64(1 + 2j), "shared": [[1, 2]] * 3, "ba": bytearray(b"\x00\x01")}
    for protocol in (2, 4, 5):
        out = safe_loads(pickle.dumps(value, protocol=protocol), "ok.pkl")
        for key in ("frames", "f", "text", "raw"):
            np.testing.assert_array_equal(out[key], value[key])
            assert out[key].dtype == value[key].dtype and out[key].flags.writeable
        assert torch.equal(out["t"], value["t"]) and out["c"] == value["c"] and out["ba"] == value["ba"]
        assert out["shared"] == value["shared"]


def test_decompression_bomb_stops_at_the_cap(tmp_path):
    path = tmp_path / "bomb.pickle.bz2"
    path.write_bytes(bz2.compress(pickle.dumps(b"\0" * (64 << 20))))
    limit = MAX_RATIO * path.stat().st_size
    assert limit < 64 << 20  # bz2 packs zeros far tighter than real frames
    with bz2.open(path, "rb") as f, pytest.raises(FormatError, match=rf"holds more than {limit} bytes"):
        safe_load(f, str(path), max_bytes=limit)


def test_a_stream_of_unknown_size_needs_a_cap(tmp_path):
    path = tmp_path / "x.pickle.bz2"
    path.write_bytes(bz2.compress(pickle.dumps([1, 2])))
    with bz2.open(path, "rb") as f, pytest.raises(ValueError, match="`max_bytes` is required"):
        safe_load(f, str(path))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_after_the_header_are_only_format_errors(tail):
    try:
        safe_loads(b"\x80\x04" + tail, "random.pkl")
    except FormatError as err:
        assert str(err).startswith("random.pkl: ")
