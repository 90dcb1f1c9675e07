"""What the restricted unpickler builds in place of numpy's, torch's and Python's own constructors.

A pickle names the functions that rebuild its objects, and their arguments
come from the file. numpy's and torch's own rebuild functions trust those
arguments: a dtype whose state clears its object flags, an array or tensor
view larger than its buffer, an int passed to ``bytearray`` all reach native
code. Here each allowed global is replaced by a function of this module that
accepts only plain values: a dtype string from :data:`PLAIN_KINDS` (no
fields, no subarrays, no state other than the one numpy writes for that
dtype), a shape of non-negative ints whose size equals the bytes given, a
tensor view that fits its storage. Anything else raises
:class:`PlainValueError` before a value exists.

Arrays and dtypes are rebuilt in two steps in a pickle (a constructor, then
``__setstate__``), so the unpickler first builds a :class:`DTypeSpec` or
:class:`ArraySpec`; :func:`finish` walks the loaded value once, turns them into
real dtypes and arrays and bounds what a file can make: nesting depth and the
number of values counted as a tree (a value shared ``n`` times counts ``n``
times, so a few bytes of shared references cannot stand for billions of leaves).
"""

from __future__ import annotations

import datetime
import warnings
from collections import OrderedDict
from typing import Any

import numpy as np

__all__ = ["PLAIN_KINDS", "MAX_DEPTH", "PlainValueError", "DTypeSpec", "ArraySpec", "CONSTRUCTORS", "finish"]

PLAIN_KINDS = "biufcSU"  # bool, ints, floats, complex, bytes and str: never objects, records or voids
MAX_DEPTH = 100
_MAX_DTYPE_CHARS = 16
_MAX_DIMS = 32
_MAX_ITEMSIZE = 1 << 16


class PlainValueError(ValueError):
    """A value rebuilt from a pickle is not plain data (the message says what was found)."""


def _plain_dtype(descr: Any) -> np.dtype:
    if not isinstance(descr, str) or not 0 < len(descr) <= _MAX_DTYPE_CHARS:
        raise PlainValueError(f"a dtype must be a short dtype string such as 'f4', got {descr!r:.60}")
    try:
        dtype = np.dtype(descr)
    except (TypeError, ValueError) as err:
        raise PlainValueError(f"dtype {descr!r} is not a numpy dtype ({err})") from None
    if dtype.kind not in PLAIN_KINDS or dtype.names is not None or dtype.subdtype is not None \
            or not 0 < dtype.itemsize <= _MAX_ITEMSIZE:
        raise PlainValueError(f"dtype {descr!r} is not a plain dtype (kinds {PLAIN_KINDS!r}, no fields, "
                              "no subarrays)")
    return dtype


class DTypeSpec:
    """``numpy.dtype(descr, align, copy)`` as a pickle calls it; :meth:`__setstate__` checks numpy's state."""

    __slots__ = ("dtype",)

    def __init__(self, descr: Any, align: Any = False, copy: Any = False) -> None:
        if align not in (False, 0) or copy not in (True, False, 0, 1):
            raise PlainValueError(f"dtype {descr!r:.40} with align={align!r}, copy={copy!r}: plain data never "
                                  "aligns records")
        self.dtype = _plain_dtype(descr)

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4):
            raise PlainValueError(f"dtype state must be numpy's 8-tuple of version 3 or 4, got {state!r:.80}")
        _, order, subarray, names, fields, elsize, alignment, flags = state[:8]
        dtype = self.dtype
        if (order not in "<>|=" or not isinstance(order, str) or len(order) != 1 or subarray is not None
                or names is not None or fields is not None or flags != dtype.flags
                or elsize not in (-1, dtype.itemsize) or alignment not in (-1, dtype.alignment)
                or (len(state) == 9 and state[8] is not None)):
            raise PlainValueError(f"dtype {dtype.str!r} comes with the state {state!r:.80}, which numpy never "
                                  "writes for a plain dtype")
        if order in "<>" and dtype.itemsize > 1 and dtype.kind != "S":
            self.dtype = dtype.newbyteorder(order)


def _dtype_of(value: Any) -> np.dtype:
    if isinstance(value, DTypeSpec):
        return value.dtype
    raise PlainValueError(f"expected a dtype, got {type(value).__name__}")


def _shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or len(shape) > _MAX_DIMS or not all(
            type(s) is int and s >= 0 for s in shape):
        raise PlainValueError(f"a shape must be a tuple of at most {_MAX_DIMS} ints >= 0, got {shape!r:.80}")
    return shape


def _array(data: Any, dtype: np.dtype, shape: tuple[int, ...], order: str) -> np.ndarray:
    if not isinstance(data, (bytes, bytearray)):
        raise PlainValueError(f"array data must be bytes, got {type(data).__name__}")
    count = 1
    for s in shape:
        count *= s
    if count * dtype.itemsize != len(data):
        raise PlainValueError(f"an array of shape {shape} and dtype {dtype.str} needs {count * dtype.itemsize} "
                              f"bytes, the pickle gives {len(data)}")
    flat = np.frombuffer(data, dtype=dtype, count=count).copy()
    return flat.reshape(shape, order="F" if order == "F" else "C")


class ArraySpec:
    """numpy's ``_reconstruct(ndarray, (0,), b"b")`` then ``__setstate__``: the array, once its state is set."""

    __slots__ = ("array",)

    def __init__(self, cls: Any = None, shape: Any = None, code: Any = None) -> None:
        if cls is not ARRAY_TYPE:
            raise PlainValueError(f"only numpy.ndarray is rebuilt, got {cls!r:.40}")
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]
        if not isinstance(state, tuple) or len(state) != 4:
            raise PlainValueError(f"array state must be (shape, dtype, fortran, data), got {state!r:.80}")
        shape, dtype, fortran, data = state
        if fortran not in (True, False, 0, 1):
            raise PlainValueError(f"array state has fortran={fortran!r:.20}; expected a bool")
        self.array = _array(data, _dtype_of(dtype), _shape(shape), "F" if fortran else "C")


ARRAY_TYPE = object()  # what the unpickler hands out for ``numpy.ndarray``


def frombuffer(data: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """numpy's ``_frombuffer(buffer, dtype, shape, order)`` (pickle protocol 5)."""
    if order not in ("C", "F"):
        raise PlainValueError(f"array order must be 'C' or 'F', got {order!r:.20}")
    return _array(data, _dtype_of(dtype), _shape(shape), order)


def scalar(dtype: Any, data: Any = None) -> np.generic:
    """numpy's ``scalar(dtype, bytes)``."""
    dt = _dtype_of(dtype)
    if not isinstance(data, bytes) or len(data) != dt.itemsize:
        raise PlainValueError(f"a {dt.str} scalar needs {dt.itemsize} bytes, got {type(data).__name__} "
                              f"of length {len(data) if isinstance(data, bytes) else '?'}")
    return np.frombuffer(data, dtype=dt, count=1)[0]


def latin1_bytes(text: Any, encoding: Any = "latin1") -> bytes:
    """``_codecs.encode(text, "latin1")``: bytes pickled by protocol 2."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise PlainValueError(f"_codecs.encode rebuilds latin1 bytes only, got encoding {encoding!r:.20}")
    return text.encode("latin1")


def byte_array(data: Any = b"", encoding: Any = None) -> bytearray:
    """``bytearray(bytes)`` or ``bytearray(text, "latin-1")``: never a size to allocate."""
    if isinstance(data, (bytes, bytearray)) and encoding is None:
        return bytearray(data)
    if isinstance(data, str) and encoding in ("latin1", "latin-1"):
        return bytearray(data.encode("latin1"))
    raise PlainValueError(f"bytearray is rebuilt from bytes only, got {type(data).__name__}")


def plain_complex(real: Any = 0.0, imag: Any = 0.0) -> complex:
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (real, imag)):
        raise PlainValueError("complex is rebuilt from two numbers only")
    return complex(real, imag)


def plain_set(items: Any = ()) -> set:
    if not isinstance(items, list):
        raise PlainValueError(f"a set is rebuilt from a list, got {type(items).__name__}")
    return set(items)


def plain_frozenset(items: Any = ()) -> frozenset:
    return frozenset(plain_set(items))


def ordered_dict(items: Any = None) -> OrderedDict:
    if items is not None:
        raise PlainValueError("OrderedDict is rebuilt empty, its items set one by one")
    return OrderedDict()


def _date_args(cls: type) -> Any:
    def build(*args: Any) -> Any:
        if not all(isinstance(a, (bytes, int, datetime.tzinfo)) or a is None for a in args) or len(args) > 8:
            raise PlainValueError(f"{cls.__name__} is rebuilt from bytes, ints and a timezone only")
        return cls(*args)
    return build


def timezone(offset: Any, name: Any = None) -> datetime.timezone:
    if not isinstance(offset, datetime.timedelta) or not (name is None or isinstance(name, str)):
        raise PlainValueError("timezone is rebuilt from a timedelta and an optional name only")
    return datetime.timezone(offset) if name is None else datetime.timezone(offset, name)


def tensor_storage(data: Any) -> Any:
    """torch's ``_load_from_bytes``: a storage read by ``torch.load(weights_only=True)`` on the CPU."""
    import io

    import torch

    if not isinstance(data, bytes):
        raise PlainValueError(f"a tensor storage must be bytes, got {type(data).__name__}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch.load gives a TypedStorage, which torch deprecates
        try:
            storage = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
        except Exception as err:  # noqa: BLE001 - torch raises several types for a refused or damaged storage
            raise PlainValueError(f"tensor storage refused by torch.load(weights_only=True): {err}") from None
        if not isinstance(storage, torch.TypedStorage) or storage.nbytes() > len(data):
            raise PlainValueError("a tensor storage must be a typed storage no larger than the pickle's bytes")
    return storage


def rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any, hooks: Any,
                   metadata: Any = None) -> Any:
    """torch's ``_rebuild_tensor_v2``: a view that fits its storage, of plain data (no grad, no hooks)."""
    import torch

    if not isinstance(storage, torch.TypedStorage):
        raise PlainValueError(f"a tensor is rebuilt over a typed storage, got {type(storage).__name__}")
    size, stride = _shape(size), _shape(stride)
    if type(offset) is not int or offset < 0 or len(stride) != len(size):
        raise PlainValueError(f"tensor view offset {offset!r:.20}, size {size}, stride {stride} do not match")
    if requires_grad is not False or hooks not in ({}, OrderedDict(), None) or metadata not in (None, {}):
        raise PlainValueError("a tensor of plain data has no requires_grad, hooks or metadata")
    last = offset + sum((s - 1) * st for s, st in zip(size, stride)) if all(size) else offset - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # TypedStorage's deprecation
        held, dtype, untyped = storage.size(), storage.dtype, storage.untyped()
    if last >= held:
        raise PlainValueError(f"a tensor view of size {size}, stride {stride} at offset {offset} reaches "
                              f"element {last}; its storage holds {held}")
    return torch.empty((0,), dtype=dtype).set_(untyped, offset, size, stride)


# (module, name) -> the function that rebuilds it; numpy 1.x and 2.x module paths, protocol 0-2 builtins
CONSTRUCTORS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): ARRAY_TYPE,
    ("numpy", "dtype"): DTypeSpec,
    ("numpy.core.multiarray", "_reconstruct"): ArraySpec,
    ("numpy._core.multiarray", "_reconstruct"): ArraySpec,
    ("numpy.core.multiarray", "scalar"): scalar,
    ("numpy._core.multiarray", "scalar"): scalar,
    ("numpy.core.numeric", "_frombuffer"): frombuffer,
    ("numpy._core.numeric", "_frombuffer"): frombuffer,
    ("_codecs", "encode"): latin1_bytes,
    ("builtins", "set"): plain_set,
    ("builtins", "frozenset"): plain_frozenset,
    ("builtins", "bytearray"): byte_array,
    ("builtins", "complex"): plain_complex,
    ("collections", "OrderedDict"): ordered_dict,
    ("datetime", "datetime"): _date_args(datetime.datetime),
    ("datetime", "date"): _date_args(datetime.date),
    ("datetime", "time"): _date_args(datetime.time),
    ("datetime", "timedelta"): _date_args(datetime.timedelta),
    ("datetime", "timezone"): timezone,
    # torch tensors as ``pickle.dumps(tensor)`` writes them (MineStudio's generated actions)
    ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
    ("torch.storage", "_load_from_bytes"): tensor_storage,
}

_LEAVES = (str, bytes, bytearray, int, float, complex, bool, type(None), np.generic, np.ndarray, np.dtype,
           datetime.date, datetime.time, datetime.timedelta, datetime.tzinfo)


def _count(value: Any, max_nodes: int) -> None:
    """Counts values as a tree (shared ones once per reference) and nesting depth; raises past the bounds."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise PlainValueError(f"the pickle stands for more than {max_nodes} values (shared references "
                                  "repeated); plain data of its size holds far fewer")
        if depth > MAX_DEPTH:
            raise PlainValueError(f"the pickle nests deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            stack.extend((x, depth + 1) for kv in item.items() for x in kv)
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend((x, depth + 1) for x in item)
        elif not isinstance(item, (*_LEAVES, DTypeSpec, ArraySpec)) and not _is_tensor(item):
            raise PlainValueError(f"the pickle builds a {type(item).__name__}, which is not plain data")


def _is_tensor(item: Any) -> bool:
    return type(item).__module__ == "torch" and type(item).__name__ == "Tensor"


def _real(value: Any, seen: dict[int, Any]) -> Any:
    """``value`` with every spec replaced by its dtype or array; lists and dicts are changed in place."""
    if isinstance(value, DTypeSpec):
        return value.dtype
    if isinstance(value, ArraySpec):
        if value.array is None:
            raise PlainValueError("an array was never given its state")
        return value.array
    if not isinstance(value, (dict, list, tuple, set, frozenset)):
        return value
    done = seen.get(id(value))
    if done is not None:
        return done
    seen[id(value)] = value
    if isinstance(value, list):
        for i, x in enumerate(value):
            y = _real(x, seen)
            if y is not x:
                value[i] = y
    elif isinstance(value, dict) and not any(isinstance(k, (DTypeSpec, ArraySpec, tuple)) for k in value):
        for k, v in value.items():
            y = _real(v, seen)
            if y is not v:
                value[k] = y
    else:
        items = list(value.items()) if isinstance(value, dict) else list(value)
        new = [_real(x, seen) for x in items] if not isinstance(value, dict) else \
            [(_real(k, seen), _real(v, seen)) for k, v in items]
        if any(a is not b for a, b in zip(new, items)) or isinstance(value, dict):
            value = type(value)(new)
            seen[id(value)] = value
    return value


def finish(value: Any, max_nodes: int) -> Any:
    """The loaded value with real dtypes and arrays, once its size and depth are within bounds."""
    _count(value, max_nodes)
    return _real(value, {})
