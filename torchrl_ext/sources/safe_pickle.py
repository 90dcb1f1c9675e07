"""A restricted unpickler for datasets that store pickles (MineStudio, CrowdPlay).

A pickle can name any importable callable and have it run while loading; a
dataset downloaded from elsewhere must never get that power. This unpickler
resolves only the globals needed to rebuild plain data — numpy arrays, numpy
scalars and dtypes, torch tensors (storages read by ``torch.load(weights_only=True)``),
``datetime`` values, ordered dicts, sets, bytes — and
refuses every other global *before* anything is called, with an error that
names the file and the global found. Dicts, lists, tuples, str, numbers,
bool and None need no global at all.
"""

from __future__ import annotations

import io
import pickle
from typing import Any, BinaryIO

from ..format import FormatError

__all__ = ["ALLOWED_GLOBALS", "UnsafePickleError", "safe_load", "safe_loads"]

ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    # numpy arrays, scalars and dtypes (numpy 1.x and 2.x module paths)
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    # bytes pickled by protocol 2 (``_codecs.encode(text, "latin1")`` only builds bytes)
    ("_codecs", "encode"),
    # plain containers and values
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "bytearray"),
    ("builtins", "complex"),
    ("collections", "OrderedDict"),
    ("datetime", "datetime"),
    ("datetime", "date"),
    ("datetime", "time"),
    ("datetime", "timedelta"),
    ("datetime", "timezone"),
    # torch tensors as ``pickle.dumps(tensor)`` writes them (MineStudio's generated actions): the view is rebuilt
    # by torch's own function and the storage bytes are read by ``torch.load(weights_only=True)`` on the CPU
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch.storage", "_load_from_bytes"),
})


_PY2_MODULES = {"__builtin__": "builtins"}  # protocol 0-2 names, mapped back by the base class


class UnsafePickleError(FormatError):
    """A pickle names a global that plain data does not need; nothing was executed."""


class _Restricted(pickle.Unpickler):
    def __init__(self, file: BinaryIO, where: str) -> None:
        super().__init__(file)
        self._where = where

    def find_class(self, module: str, name: str) -> Any:
        if (_PY2_MODULES.get(module, module), name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"{self._where}: the pickle asks for {module}.{name}, which plain data (arrays, dicts, "
                "lists, numbers, strings) never needs; refused without running it. Convert the file "
                "with trusted code if you know where it came from"
            )
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return _weights_only_storage
        return super().find_class(module, name)


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode is allowed only to rebuild latin1 bytes, got {encoding!r}")
    return text.encode("latin1")


def _weights_only_storage(data: bytes) -> Any:
    import torch

    if not isinstance(data, bytes):
        raise pickle.UnpicklingError(f"a tensor storage must be bytes, got {type(data).__name__}")
    try:
        return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as err:  # noqa: BLE001 - torch raises several types for a refused or damaged storage
        raise pickle.UnpicklingError(f"tensor storage refused by torch.load(weights_only=True): {err}") from err


def safe_load(file: BinaryIO, where: str) -> Any:
    """Unpickles plain data from an open binary file; ``where`` names it in errors."""
    try:
        return _Restricted(file, where).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, OverflowError, MemoryError) as err:
        raise FormatError(
            f"{where}: not a readable pickle of plain data ({type(err).__name__}: {err}); the file is "
            "truncated or corrupt"
        ) from err


def safe_loads(data: bytes, where: str) -> Any:
    """Unpickles plain data from bytes; ``where`` names the source in errors.

    Example:
        >>> import numpy as np, pickle
        >>> safe_loads(pickle.dumps({"obs": np.arange(3)}), "demo")["obs"].tolist()
        [0, 1, 2]
        >>> import os
        >>> class Evil:
        ...     def __reduce__(self):
        ...         return (os.system, ("echo pwned",))
        >>> safe_loads(pickle.dumps(Evil()), "evil.pkl")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        torchrl_ext.sources.safe_pickle.UnsafePickleError: evil.pkl: the pickle asks for posix.system, ...
    """
    return safe_load(io.BytesIO(data), where)
