"""The ``.npy`` header, read without evaluating anything a file wrote.

Layout (numpy's ``numpy/lib/format.py``, format versions 1.0, 2.0 and 3.0):

==============  ==============================================================
bytes           content
==============  ==============================================================
6               the magic string ``b"\\x93NUMPY"``
2               major and minor version: 1.0, 2.0 or 3.0
2 or 4          ``HLEN``, little-endian: ``uint16`` in 1.0, ``uint32`` in 2.0/3.0
``HLEN``        a Python dict literal (latin-1; UTF-8 in 3.0), padded with spaces and ``\\n``
payload         ``prod(shape) * itemsize`` bytes, C order unless ``fortran_order``
==============  ==============================================================

The dict has exactly the keys ``descr`` (a dtype string such as ``'<i4'``),
``fortran_order`` (``True`` or ``False``) and ``shape`` (a tuple of ints).

Reading trusts nothing: ``HLEN`` is capped at :data:`MAX_HEADER_BYTES`
(numpy's own default cap) before anything is read, the header is read in
full or reported short, and it is parsed by a tokenizer that knows strings,
integers, ``True``/``False`` and the punctuation of a dict holding a tuple
(numpy's parser falls back on :mod:`tokenize` for old headers, which raises
its own errors on a lying ``HLEN``). ``descr`` must be one of
:data:`PLAIN_DESCRS` (bool, integers, floats and complex numbers, either byte
order): no objects, no fields, no strings, no subarrays. ``shape`` holds at
most :data:`MAX_NDIM` non-negative dimensions whose payload, computed in
Python integers so nothing overflows, is at most the caller's ``max_bytes``
(:data:`MAX_ARRAY_BYTES` by default). Every refusal is one
:class:`~torchrl_ext.format.FormatError` line naming the source.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from typing import IO

import numpy as np

from ..format import FormatError

__all__ = [
    "MAGIC",
    "MAX_ARRAY_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_NDIM",
    "PLAIN_DESCRS",
    "NpyHeader",
    "check_size",
    "read_exact",
    "read_npy_header",
]

MAGIC = b"\x93NUMPY"
MAX_HEADER_BYTES = 10_000  # numpy's default `max_header_size`
MAX_NDIM = 64  # numpy's NPY_MAXDIMS
MAX_ARRAY_BYTES = 1 << 40
#: dtype strings a header may name: plain numbers, either byte order
PLAIN_DESCRS = re.compile(r"[|<>=]?(?:b1|[iu][1248]|f[248]|c(?:8|16))")
_VERSIONS = {(1, 0): ("<H", "latin-1"), (2, 0): ("<I", "latin-1"), (3, 0): ("<I", "utf-8")}
_KEYS = ("descr", "fortran_order", "shape")
_MAX_DIGITS = 20
_TOKEN = re.compile(
    r"""[ \t\f\r\n]*"""  # Python's whitespace (not Unicode's: numpy's parser refuses that)
    r"""(?:(?P<str>'[^'\\\n]*'|"[^"\\\n]*")"""  # a string without escapes
    r"""|(?P<int>-?[0-9]+)L?"""  # an int (Python 2 headers may end a long with L)
    r"""|(?P<bool>True|False)|(?P<punct>[{}():,])|(?P<end>\Z))"""
)
_END = ("end", "")


@dataclass(frozen=True)
class NpyHeader:
    """The parsed header of one ``.npy`` array."""

    dtype: np.dtype
    shape: tuple[int, ...]
    fortran_order: bool

    @property
    def nbytes(self) -> int:
        """Payload bytes (a Python int: no overflow)."""
        return math.prod(self.shape) * self.dtype.itemsize


def read_exact(stream: IO[bytes], n: int) -> bytes:
    """Up to ``n`` bytes of ``stream``: fewer only at its end (a short ``read`` is retried)."""
    parts, got = [], 0
    while got < n:
        part = stream.read(n - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _tokens(text: str, name: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while True:
        m = _TOKEN.match(text, pos)
        if m is None:
            pos += len(text[pos:]) - len(text[pos:].lstrip(" \t\f\r\n"))
            raise FormatError(
                f"{name}: npy header is not a dict of strings, booleans and a tuple of ints: unexpected "
                f"{text[pos:pos + 20]!r} at character {pos}; the file is corrupt, download it again"
            )
        kind = m.lastgroup
        if kind == "end":
            out.append(_END)
            return out
        out.append((kind, m.group(kind)))
        pos = m.end()


class _Parser:
    """The dict literal of a header, token by token (no ``eval``, no recursion)."""

    def __init__(self, tokens: list[tuple[str, str]], name: str) -> None:
        self.tokens, self.at, self.name = tokens, 0, name

    def next(self) -> tuple[str, str]:
        tok = self.tokens[self.at]
        if tok is not _END:  # the end repeats
            self.at += 1
        return tok

    def fail(self, expected: str, tok: tuple[str, str]) -> FormatError:
        found = "the end of the header" if tok is _END else repr(tok[1])
        return FormatError(f"{self.name}: npy header: expected {expected}, found {found}; "
                           "the file is corrupt, download it again")

    def expect(self, punct: str) -> None:
        tok = self.next()
        if tok != ("punct", punct):
            raise self.fail(repr(punct), tok)

    def value(self) -> object:
        tok = self.next()
        if tok[0] == "str":
            return tok[1][1:-1]
        if tok[0] == "bool":
            return tok[1] == "True"
        if tok[0] == "int":
            return self.integer(tok[1])
        if tok != ("punct", "("):
            raise self.fail("a string, a boolean, an int or a tuple", tok)
        items: list[int] = []
        comma = False
        while (tok := self.next()) != ("punct", ")"):
            if tok[0] != "int":
                raise self.fail("an int or ')' in the shape tuple", tok)
            items.append(self.integer(tok[1]))
            tok = self.next()
            if tok == ("punct", ")"):
                return items[0] if len(items) == 1 and not comma else tuple(items)
            if tok != ("punct", ","):
                raise self.fail("',' or ')' in the shape tuple", tok)
            comma = True
        return tuple(items)

    def integer(self, text: str) -> int:
        if len(text.lstrip("-")) > _MAX_DIGITS:
            raise FormatError(f"{self.name}: npy header holds an int of {len(text)} digits, expected at most "
                              f"{_MAX_DIGITS}; the file is corrupt, download it again")
        return int(text)

    def header_dict(self) -> dict[str, object]:
        self.expect("{")
        out: dict[str, object] = {}
        tok = self.next()
        while tok != ("punct", "}"):
            if tok[0] != "str":
                raise self.fail("a key string or '}'", tok)
            key = tok[1][1:-1]
            if key in out:
                raise FormatError(f"{self.name}: npy header names {key!r} twice; the file is corrupt")
            self.expect(":")
            out[key] = self.value()
            tok = self.next()
            if tok == ("punct", ","):
                tok = self.next()
            elif tok != ("punct", "}"):
                raise self.fail("',' or '}' after a value", tok)
        tok = self.next()
        if tok is not _END:
            raise self.fail("only padding after the dict", tok)
        return out


def _header(fields: dict[str, object], name: str, max_bytes: int) -> NpyHeader:
    if sorted(fields) != sorted(_KEYS):
        raise FormatError(f"{name}: npy header has keys {sorted(fields)}, expected exactly {list(_KEYS)}; "
                          "the file is corrupt, download it again")
    descr, fortran, shape = (fields[k] for k in _KEYS)
    if not isinstance(descr, str) or not PLAIN_DESCRS.fullmatch(descr):
        raise FormatError(f"{name}: npy array has dtype {descr!r}, expected plain numbers (bool, int, float, "
                          "complex; no objects or fields); refused")
    if not isinstance(fortran, bool):
        raise FormatError(f"{name}: npy header has fortran_order {fortran!r}, expected True or False")
    if not isinstance(shape, tuple) or len(shape) > MAX_NDIM or any(d < 0 for d in shape):
        raise FormatError(f"{name}: npy header has shape {shape!r}, expected a tuple of at most {MAX_NDIM} "
                          "non-negative ints; the file is corrupt, download it again")
    header = NpyHeader(np.dtype(descr), shape, fortran)
    check_size(header, name, max_bytes)
    return header


def check_size(header: NpyHeader, name: str, max_bytes: int) -> None:
    """Refuses a header whose payload is over ``max_bytes`` (before anything is allocated for it)."""
    if header.nbytes > max_bytes:
        raise FormatError(f"{name}: npy header promises {header.nbytes} bytes (shape {header.shape}, "
                          f"{header.dtype}), expected at most {max_bytes}; refused before allocating, the file "
                          "is corrupt or not the array expected")


def read_npy_header(stream: IO[bytes], name: str = "<stream>", *, max_bytes: int = MAX_ARRAY_BYTES) -> NpyHeader:
    """Reads and validates an ``.npy`` header, leaving ``stream`` at the payload.

    Args:
        stream: a binary stream positioned at the magic string.
        name: how errors name the source.
        max_bytes: the largest payload accepted (checked before anything is allocated).

    Raises:
        FormatError: anything but a header of :data:`PLAIN_DESCRS` dtype and a
            shape within ``max_bytes`` (errors of the stream itself pass through).

    Example:
        >>> import io
        >>> buf = io.BytesIO(); np.save(buf, np.zeros((2, 3), np.uint8)); _ = buf.seek(0)
        >>> read_npy_header(buf)
        NpyHeader(dtype=dtype('uint8'), shape=(2, 3), fortran_order=False)
    """
    start = read_exact(stream, len(MAGIC) + 2)
    if start[:len(MAGIC)] != MAGIC or len(start) < len(MAGIC) + 2:
        raise FormatError(f"{name}: the magic string is not correct; expected {MAGIC!r} and a version, "
                          f"got {start!r}; not an npy array")
    version = (start[-2], start[-1])
    if version not in _VERSIONS:
        raise FormatError(f"{name}: npy format version {version[0]}.{version[1]} is not supported; "
                          "expected 1.0, 2.0 or 3.0")
    length_format, encoding = _VERSIONS[version]
    raw_length = read_exact(stream, struct.calcsize(length_format))
    if len(raw_length) < struct.calcsize(length_format):
        raise FormatError(f"{name}: npy header length is cut short ({len(raw_length)} bytes); the file is truncated")
    (length,) = struct.unpack(length_format, raw_length)
    if length > MAX_HEADER_BYTES:
        raise FormatError(f"{name}: npy header is {length} bytes, expected at most {MAX_HEADER_BYTES}; "
                          "the file is corrupt or hostile")
    raw = read_exact(stream, length)
    if len(raw) < length:
        raise FormatError(f"{name}: npy header promises {length} bytes, the file ends after {len(raw)}; "
                          "the file is truncated, download it again")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as err:
        raise FormatError(f"{name}: npy header is not {encoding} text ({err}); the file is corrupt") from err
    return _header(_Parser(_tokens(text, name), name).header_dict(), name, max_bytes)
