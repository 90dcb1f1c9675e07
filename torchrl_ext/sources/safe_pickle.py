"""A restricted unpickler for datasets that store pickles (MineStudio, CrowdPlay).

A pickle can name any importable callable and have it run while loading; a
dataset downloaded from elsewhere must never get that power. This unpickler
resolves only the globals needed to rebuild plain data — numpy arrays, numpy
scalars and dtypes, torch tensors, ``datetime`` values, ordered dicts, sets,
bytes — and refuses every other global *before* anything is called, with an
error that names the file and the global found. Dicts, lists, tuples, str,
numbers, bool and None need no global at all.

Even the allowed globals never reach numpy's or torch's own rebuild code with
arguments from the file: each is served by a checking constructor of
:mod:`.plain_values` (dtype strings of plain kinds only, sizes that match the
bytes given, tensor views inside their storage, no ``bytearray(size)``).
What a file can make is bounded: the bytes read (the file's own size, or
``max_bytes`` for a decompressing stream), nesting depth, and the number of
values counted as a tree. Every malformed input is one :class:`FormatError`
naming the file.
"""

from __future__ import annotations

import io
import pickle
from typing import Any, BinaryIO

from ..format import FormatError
from .plain_values import CONSTRUCTORS, PlainValueError, finish

__all__ = ["ALLOWED_GLOBALS", "UnsafePickleError", "safe_load", "safe_loads", "MAX_RATIO"]

ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(CONSTRUCTORS)
MAX_RATIO = 2000  # decompressed bytes per compressed byte a caller should allow (bz2 of real frames: ~10-100)
_NODES_PER_BYTE = 4  # values a pickle may stand for, per byte read (one opcode of at least a byte per value)
_MIN_NODES = 100_000

_PY2_MODULES = {"__builtin__": "builtins"}  # protocol 0-2 names, mapped back by the base class


class UnsafePickleError(FormatError):
    """A pickle names a global that plain data does not need; nothing was executed."""


class _Capped(io.RawIOBase):
    """A read-only stream that fails once more than ``limit`` bytes were asked of it."""

    def __init__(self, raw: BinaryIO, limit: int, where: str) -> None:
        self.raw, self.limit, self.where, self.count = raw, limit, where, 0
        self.failed: BaseException | None = None  # an error of the stream itself (e.g. bad compressed data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self.count + len(view) > self.limit:
            view = view[: max(self.limit - self.count + 1, 0)]
        try:
            data = self.raw.read(len(view))
        except Exception as err:
            self.failed = err
            raise
        view[: len(data)] = data
        self.count += len(data)
        if self.count > self.limit:
            raise FormatError(f"{self.where}: the pickle holds more than {self.limit} bytes, the most this record "
                              "may hold; the file is corrupt or hostile")
        return len(data)


class _Restricted(pickle.Unpickler):
    def __init__(self, file: BinaryIO, where: str) -> None:
        super().__init__(file)
        self._where = where

    def find_class(self, module: str, name: str) -> Any:
        found = CONSTRUCTORS.get((_PY2_MODULES.get(module, module), name))
        if found is None:
            raise UnsafePickleError(
                f"{self._where}: the pickle asks for {module}.{name}, which plain data (arrays, dicts, "
                "lists, numbers, strings) never needs; refused without running it. Convert the file "
                "with trusted code if you know where it came from"
            )
        return found


def _size_of(file: BinaryIO) -> int | None:
    """Bytes left in a plain file or in-memory buffer; None for anything else (a decompressing stream
    would have to decompress everything to answer)."""
    if not isinstance(file, (io.BufferedReader, io.FileIO, io.BytesIO)):
        return None
    try:
        here = file.tell()
        end = file.seek(0, io.SEEK_END)
        file.seek(here)
        return end - here
    except (OSError, AttributeError, ValueError):
        return None


def safe_load(file: BinaryIO, where: str, *, max_bytes: int | None = None) -> Any:
    """Unpickles plain data from an open binary file; ``where`` names it in errors.

    Args:
        file: the pickle, from its current position.
        where: the file's name for messages.
        max_bytes: the most bytes the pickle may hold (default: what is left
            of a seekable file; required for a stream that cannot seek, such
            as a decompressing one: e.g. ``MAX_RATIO`` times the compressed size).
    """
    limit = max_bytes if max_bytes is not None else _size_of(file)
    if limit is None:
        raise ValueError(f"{where}: `max_bytes` is required for a stream whose size is unknown")
    capped = _Capped(file, limit, where)
    try:
        value = _Restricted(io.BufferedReader(capped), where).load()
        return finish(value, max(_MIN_NODES, _NODES_PER_BYTE * capped.count))
    except FormatError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure to rebuild a hostile file is a format error
        if err is capped.failed:
            raise  # the stream's own error (a damaged compressed file): its caller names it
        why = f"{type(err).__name__}: {err}"
        if isinstance(err, PlainValueError):
            why = str(err)
        raise FormatError(
            f"{where}: not a readable pickle of plain data ({why:.300}); the file is truncated, corrupt or "
            "hostile"
        ) from None


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
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{where}: expected the pickle as bytes, got {type(data).__name__}")
    return safe_load(io.BytesIO(data), where, max_bytes=len(data))
