"""Streaming reader for ``.npy`` arrays inside gzip files.

The ``.npy`` format (numpy's ``numpy/lib/format.py``): the magic string
``b"\\x93NUMPY"``, one byte major and one byte minor version, a little-endian
header length (``uint16`` in version 1.0, ``uint32`` in 2.0/3.0), then an ASCII
(3.0: UTF-8) Python dict literal with ``descr``, ``fortran_order`` and
``shape``, padded with spaces and a newline; the raw payload follows.

:class:`NpyGzReader` parses the header from the decompressed stream and hands
out the payload in caller-sized pieces (``readinto`` straight into the
caller's array, ``skip``), so peak memory is whatever the caller asks for,
whatever the array size; :meth:`NpyGzReader.finish` checks that the payload
was complete and nothing follows it. The source is a path or any binary file
object (a network stream, for example). :func:`copy_npy` and
:func:`load_npy_gz` are built on it. Object dtypes (pickles) are refused.
Decompression uses ``isal.igzip`` when installed (several times faster than
``gzip``), else the standard library; ``threaded=True`` inflates in a
background thread (``isal.igzip_threaded``) so decompression overlaps with
whatever the caller does with the bytes.
"""

from __future__ import annotations

import gzip
import logging
import os
import zlib
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

try:  # optional: Intel ISA-L bindings, a much faster inflate
    from isal import igzip as _gzip_impl
    from isal import igzip_threaded as _threaded_impl
    from isal import isal_zlib as _isal_zlib

    _EXTRA_ERRORS: tuple[type[BaseException], ...] = (_isal_zlib.error,)
except ImportError:  # pragma: no cover - depends on the environment
    _gzip_impl = gzip
    _threaded_impl = None
    _EXTRA_ERRORS = ()

__all__ = [
    "GZIP_BACKEND",
    "NpyGzReader",
    "NpyHeader",
    "copy_npy",
    "load_npy_gz",
    "open_gzip",
    "read_npy_header",
]

logger = logging.getLogger(__name__)

MAX_HEADER_BYTES = 10_000
DEFAULT_CHUNK_BYTES = 16 << 20
GZIP_BACKEND = _gzip_impl.__name__
# Errors of the gzip layer only; an OSError of the source itself (disk, network) passes through.
_DECOMPRESS_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error, *_EXTRA_ERRORS)


@dataclass(frozen=True)
class NpyHeader:
    """The parsed header of one ``.npy`` array."""

    dtype: np.dtype
    shape: tuple[int, ...]
    fortran_order: bool

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def open_gzip(src: str | os.PathLike | IO[bytes], *, threaded: bool = False) -> IO[bytes]:
    """Opens a gzip path or binary file object for streaming reads with the fastest backend.

    Args:
        src: a path, or a readable binary file object positioned at the gzip data.
        threaded: inflate in a background thread (``isal`` only; ignored without it).
    """
    if threaded and _threaded_impl is not None:
        return _threaded_impl.open(src if hasattr(src, "read") else os.fspath(src), "rb", threads=1)
    if hasattr(src, "read"):
        return _gzip_impl.GzipFile(fileobj=src, mode="rb")
    return _gzip_impl.open(os.fspath(src), "rb")


class _HeaderReads:
    """Passes header reads to the stream, refusing one longer than ``MAX_HEADER_BYTES`` before reading it."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > MAX_HEADER_BYTES:
            raise ValueError(f"header is {n} bytes, expected at most {MAX_HEADER_BYTES}; the file is not trusted")
        return self._stream.read(n)


def read_npy_header(stream: IO[bytes], name: str = "<stream>") -> NpyHeader:
    """Reads and validates an ``.npy`` header with numpy's own parser, leaving ``stream`` at the payload.

    Format versions 1.0 and 2.0 (numpy's ``read_array_header_1_0`` / ``_2_0``,
    header capped at ``MAX_HEADER_BYTES``); object and structured dtypes are refused.
    """
    from numpy.lib import format as npy_format

    readers = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}
    try:
        capped = _HeaderReads(stream)
        version = npy_format.read_magic(capped)
        if version not in readers:
            raise ValueError(f"npy format version {version[0]}.{version[1]} is not supported; expected 1.0 or 2.0")
        shape, fortran_order, dtype = readers[version](capped, max_header_size=MAX_HEADER_BYTES)
    except (ValueError, SyntaxError, TypeError) as err:  # gzip-layer errors pass through to the caller
        raise ValueError(f"{name}: not a readable npy header ({err}); download the file again") from err
    if dtype.hasobject or dtype.names is not None:
        raise ValueError(f"{name}: npy array has dtype {dtype} (objects or fields); refused, expected plain numbers")
    return NpyHeader(dtype, tuple(int(x) for x in shape), bool(fortran_order))


def _check(header: NpyHeader, name: str, dtype: Any, ndim: int | None, tail: tuple[int, ...] | None) -> None:
    if dtype is not None and header.dtype != np.dtype(dtype):
        raise ValueError(f"{name}: expected dtype {np.dtype(dtype)}, found {header.dtype}; not a replay-log column")
    if ndim is not None and len(header.shape) != ndim:
        raise ValueError(f"{name}: expected a {ndim}-d array, found shape {header.shape}")
    if tail is not None and header.shape[1:] != tail:
        raise ValueError(f"{name}: expected per-row shape {tail}, found shape {header.shape}")
    if header.fortran_order and len(header.shape) > 1:
        raise ValueError(f"{name}: Fortran-ordered arrays are not supported; expected C order")


class NpyGzReader:
    """The payload of one gzip-wrapped ``.npy`` array, read front to back in caller-sized pieces.

    Args:
        src: a path or a readable binary file object holding the gzip data.
        name: how errors name the source (default: the path).
        dtype, ndim, tail: expected dtype, number of dimensions and per-row shape.
        threaded: inflate in a background thread (see :func:`open_gzip`).

    Every error is a ``ValueError`` naming the source: corrupt or truncated gzip,
    bad header, unexpected dtype or shape, a short payload, trailing data.

    Example:
        >>> import gzip, io
        >>> buf = io.BytesIO(); np.save(buf, np.arange(6, dtype=np.int32))
        >>> with NpyGzReader(io.BytesIO(gzip.compress(buf.getvalue())), dtype=np.int32, ndim=1) as r:
        ...     head = np.empty(2, np.int32); r.readinto(memoryview(head.view(np.uint8))); r.skip(8)
        ...     rest = np.empty(2, np.int32); r.readinto(memoryview(rest.view(np.uint8))); r.finish()
        >>> head.tolist(), rest.tolist(), r.header.shape
        ([0, 1], [4, 5], (6,))
    """

    def __init__(self, src: str | os.PathLike | IO[bytes], *, name: str | None = None, dtype: Any = None,
                 ndim: int | None = None, tail: tuple[int, ...] | None = None, threaded: bool = False) -> None:
        self.name = name if name is not None else (os.fspath(src) if not hasattr(src, "read") else "<stream>")
        self._stream: IO[bytes] | None = None
        self._scratch: bytearray | None = None
        try:
            self._stream = open_gzip(src, threaded=threaded)
            self.header = read_npy_header(self._stream, self.name)
        except ValueError:
            self.close()
            raise
        except _DECOMPRESS_ERRORS as err:
            self.close()
            raise self._gzip_error(err) from err
        self.left = self.header.nbytes
        try:
            _check(self.header, self.name, dtype, ndim, tail)
        except ValueError:
            self.close()
            raise

    def _gzip_error(self, err: BaseException) -> ValueError:
        return ValueError(f"{self.name}: not a valid gzip stream ({err}); download the file again")

    def _truncated(self, got: int) -> ValueError:
        h = self.header
        return ValueError(
            f"{self.name}: truncated npy payload: expected {h.nbytes} bytes for shape {h.shape}, "
            f"found {got}; download the file again"
        )

    def readinto(self, view: memoryview) -> None:
        """Fills ``view`` (a byte view) with the next ``len(view)`` payload bytes."""
        if view.ndim != 1 or view.format != "B":
            view = view.cast("B")
        n = view.nbytes
        if n > self.left:
            raise ValueError(f"{self.name}: asked for {n} bytes, only {self.left} of the npy payload are left")
        at = 0
        try:
            while at < n:
                k = self._stream.readinto(view[at:])
                if not k:
                    raise self._truncated(self.header.nbytes - self.left + at)
                at += k
        except ValueError:
            raise
        except _DECOMPRESS_ERRORS as err:
            raise self._gzip_error(err) from err
        self.left -= n

    def skip(self, nbytes: int, chunk_bytes: int = 4 << 20) -> None:
        """Reads and drops the next ``nbytes`` payload bytes."""
        if self._scratch is None:
            self._scratch = bytearray(min(chunk_bytes, max(nbytes, 1)))
        view = memoryview(self._scratch)
        while nbytes:
            k = min(nbytes, len(view))
            self.readinto(view[:k])
            nbytes -= k

    def finish(self) -> None:
        """Checks the payload was read to its end and nothing follows it; closes the stream."""
        try:
            if self.left:
                raise ValueError(f"{self.name}: {self.left} bytes of the npy payload were not read")
            if self._stream.read(1):
                raise ValueError(f"{self.name}: unexpected data after the npy payload of shape {self.header.shape}")
        except ValueError:
            raise
        except _DECOMPRESS_ERRORS as err:
            raise self._gzip_error(err) from err
        finally:
            self.close()

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.close()
            except _DECOMPRESS_ERRORS:  # a broken stream is reported by the read that found it
                pass
            self._stream = None

    def __enter__(self) -> NpyGzReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def copy_npy(
    src: str | os.PathLike | IO[bytes],
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
        src: gzip file (path or binary file object) holding one ``.npy`` array.
        dest: writable binary file.
        dtype, ndim, tail: expected dtype, number of dimensions and per-row shape.
        chunk_bytes: size of each copy.

    Raises:
        ValueError: corrupt or truncated gzip, bad header, unexpected dtype/shape.
    """
    with NpyGzReader(src, dtype=dtype, ndim=ndim, tail=tail) as reader:
        buf = bytearray(min(chunk_bytes, max(reader.left, 1)))
        view = memoryview(buf)
        while reader.left:
            n = min(len(buf), reader.left)
            reader.readinto(view[:n])
            dest.write(view[:n])
        reader.finish()
    return reader.header


def load_npy_gz(
    src: str | os.PathLike | IO[bytes],
    *,
    name: str | None = None,
    dtype: Any = None,
    ndim: int | None = None,
    max_bytes: int = 256 << 20,
) -> np.ndarray:
    """Loads a small gzip-compressed ``.npy`` array into memory (refuses arrays over ``max_bytes``)."""
    with NpyGzReader(src, name=name, dtype=dtype, ndim=ndim) as reader:
        if reader.left > max_bytes:
            raise ValueError(f"{reader.name}: array of {reader.left} bytes exceeds {max_bytes}; stream it with NpyGzReader")
        out = np.empty(reader.header.shape, dtype=reader.header.dtype)
        reader.readinto(memoryview(out.reshape(-1).view(np.uint8)))
        reader.finish()
    return out
