"""Streaming reader for ``.npy`` arrays inside gzip files.

The ``.npy`` format (numpy's ``numpy/lib/format.py``): the magic string
``b"\\x93NUMPY"``, one byte major and one byte minor version, a little-endian
header length (``uint16`` in version 1.0, ``uint32`` in 2.0/3.0), then an ASCII
(3.0: UTF-8) Python dict literal with ``descr``, ``fortran_order`` and
``shape``, padded with spaces and a newline; the raw payload follows.

:func:`copy_npy` parses the header from the decompressed stream and copies the
payload in bounded chunks straight into a destination file, so peak memory is
one chunk whatever the array size. Object dtypes (pickles) are refused.
Decompression uses ``isal.igzip`` when installed (several times faster than
``gzip``), else the standard library.
"""

from __future__ import annotations

import ast
import gzip
import logging
import os
import zlib
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

try:  # optional: Intel ISA-L bindings, a much faster inflate
    from isal import igzip as _gzip_impl
    from isal import isal_zlib as _isal_zlib

    _EXTRA_ERRORS: tuple[type[BaseException], ...] = (_isal_zlib.error,)
except ImportError:  # pragma: no cover - depends on the environment
    _gzip_impl = gzip
    _EXTRA_ERRORS = ()

__all__ = ["GZIP_BACKEND", "NpyHeader", "copy_npy", "load_npy_gz", "open_gzip", "read_npy_header"]

logger = logging.getLogger(__name__)

MAGIC = b"\x93NUMPY"
MAX_HEADER_BYTES = 10_000
DEFAULT_CHUNK_BYTES = 16 << 20
GZIP_BACKEND = _gzip_impl.__name__
_DECOMPRESS_ERRORS = (OSError, EOFError, zlib.error, *_EXTRA_ERRORS)


@dataclass(frozen=True)
class NpyHeader:
    """The parsed header of one ``.npy`` array."""

    dtype: np.dtype
    shape: tuple[int, ...]
    fortran_order: bool

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def open_gzip(path: str | os.PathLike) -> IO[bytes]:
    """Opens a gzip file for streaming reads with the fastest available backend."""
    return _gzip_impl.open(os.fspath(path), "rb")


def _read_exact(stream: IO[bytes], n: int, name: str, what: str) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise ValueError(
            f"{name}: truncated {what}: expected {n} bytes, found {len(data)}; "
            "download the file again"
        )
    return data


def read_npy_header(stream: IO[bytes], name: str = "<stream>") -> NpyHeader:
    """Reads and validates an ``.npy`` header, leaving ``stream`` at the payload."""
    magic = _read_exact(stream, 8, name, "npy magic")
    if magic[:6] != MAGIC:
        raise ValueError(f"{name}: the npy magic string is not correct; expected {MAGIC!r}, got {magic[:6]!r}")
    major, minor = magic[6], magic[7]
    if (major, minor) == (1, 0):
        hlen = int.from_bytes(_read_exact(stream, 2, name, "npy header length"), "little")
    elif (major, minor) in ((2, 0), (3, 0)):
        hlen = int.from_bytes(_read_exact(stream, 4, name, "npy header length"), "little")
    else:
        raise ValueError(f"{name}: npy format version {major}.{minor} is not supported; expected 1.0, 2.0 or 3.0")
    if hlen > MAX_HEADER_BYTES:
        raise ValueError(f"{name}: npy header is {hlen} bytes, expected at most {MAX_HEADER_BYTES}; the file is not trusted")
    raw = _read_exact(stream, hlen, name, "npy header")
    try:
        header = ast.literal_eval(raw.decode("utf-8" if major == 3 else "latin1"))
    except (SyntaxError, ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{name}: expected an npy header dict, could not parse {raw[:80]!r}") from err
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise ValueError(f"{name}: expected an npy header with descr, fortran_order and shape, got {header!r}")
    shape = header["shape"]
    if not isinstance(shape, tuple) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise ValueError(f"{name}: npy shape must be a tuple of ints >= 0, got {shape!r}")
    if not isinstance(header["fortran_order"], bool):
        raise ValueError(f"{name}: npy fortran_order must be a bool, got {header['fortran_order']!r}")
    descr = header["descr"]
    if not isinstance(descr, str):
        raise ValueError(f"{name}: npy descr {descr!r} is not a plain dtype; structured or object arrays are refused")
    try:
        dtype = np.dtype(descr)
    except TypeError as err:
        raise ValueError(f"{name}: npy descr {descr!r} is not a dtype") from err
    if dtype.hasobject:
        raise ValueError(f"{name}: npy array has object dtype {descr!r} (a pickle); refused, expected numbers")
    return NpyHeader(dtype, shape, header["fortran_order"])


def _check(header: NpyHeader, name: str, dtype: Any, ndim: int | None, tail: tuple[int, ...] | None) -> None:
    if dtype is not None and header.dtype != np.dtype(dtype):
        raise ValueError(f"{name}: expected dtype {np.dtype(dtype)}, found {header.dtype}; not a replay-log column")
    if ndim is not None and len(header.shape) != ndim:
        raise ValueError(f"{name}: expected a {ndim}-d array, found shape {header.shape}")
    if tail is not None and header.shape[1:] != tail:
        raise ValueError(f"{name}: expected per-row shape {tail}, found shape {header.shape}")
    if header.fortran_order and len(header.shape) > 1:
        raise ValueError(f"{name}: Fortran-ordered arrays are not supported; expected C order")


def copy_npy(
    src: str | os.PathLike,
    dest: IO[bytes],
    *,
    dtype: Any = None,
    ndim: int | None = None,
    tail: tuple[int, ...] | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> NpyHeader:
    """Decompresses the ``.npy`` array in gzip file ``src`` into the binary file ``dest``.

    Writes exactly the raw C-order payload (no header). Peak memory is one chunk.

    Args:
        src: gzip file holding one ``.npy`` array.
        dest: writable binary file.
        dtype, ndim, tail: expected dtype, number of dimensions and per-row shape.
        chunk_bytes: size of each copy.

    Raises:
        ValueError: corrupt or truncated gzip, bad header, unexpected dtype/shape.
    """
    name = os.fspath(src)
    try:
        with open_gzip(src) as stream:
            header = read_npy_header(stream, name)
            _check(header, name, dtype, ndim, tail)
            left = header.nbytes
            buf = bytearray(min(chunk_bytes, max(left, 1)))
            view = memoryview(buf)
            while left:
                n = stream.readinto(view[: min(len(buf), left)])
                if not n:
                    raise ValueError(
                        f"{name}: truncated npy payload: expected {header.nbytes} bytes for shape "
                        f"{header.shape}, found {header.nbytes - left}; download the file again"
                    )
                dest.write(view[:n])
                left -= n
            if stream.read(1):
                raise ValueError(f"{name}: unexpected data after the npy payload of shape {header.shape}")
    except ValueError:
        raise
    except _DECOMPRESS_ERRORS as err:
        raise ValueError(f"{name}: not a valid gzip stream ({err}); download the file again") from err
    return header


def load_npy_gz(
    src: str | os.PathLike,
    *,
    dtype: Any = None,
    ndim: int | None = None,
    max_bytes: int = 256 << 20,
) -> np.ndarray:
    """Loads a small gzip-compressed ``.npy`` array into memory (refuses arrays over ``max_bytes``)."""
    name = os.fspath(src)
    try:
        with open_gzip(src) as stream:
            header = read_npy_header(stream, name)
            _check(header, name, dtype, ndim, None)
            if header.nbytes > max_bytes:
                raise ValueError(f"{name}: array of {header.nbytes} bytes exceeds {max_bytes}; stream it with copy_npy")
            data = _read_exact(stream, header.nbytes, name, "npy payload")
    except ValueError:
        raise
    except _DECOMPRESS_ERRORS as err:
        raise ValueError(f"{name}: not a valid gzip stream ({err}); download the file again") from err
    return np.frombuffer(data, dtype=header.dtype).reshape(header.shape).copy()
