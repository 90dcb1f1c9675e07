"""Streaming reader for ``.npy`` arrays inside gzip files.

The ``.npy`` header is specified and parsed in :mod:`.npy_header`; this
module reads what follows it. :class:`NpyGzReader` parses the header from
the decompressed stream and hands out the payload in caller-sized pieces
(``readinto`` straight into the caller's array, ``skip``), so peak memory is
whatever the caller asks for, whatever the array size; :meth:`NpyGzReader.finish`
checks that the payload was complete and nothing follows it. The source is
a path or any binary file object (a network stream, for example).
:func:`copy_npy` and :func:`load_npy_gz` are built on it.

Files are untrusted: before a byte of payload is read, the header's size is
checked against the caller's ``max_bytes`` and against what the compressed
source can hold (deflate expands at most :data:`MAX_DEFLATE_RATIO` times;
the source size is that of the path, of a seekable file object, or given as
``compressed_bytes``). :func:`load_npy_gz` allocates as the payload arrives,
so a stream of unknown size cannot make it allocate more than twice what it
holds. Every problem of the file (gzip, header, dtype, shape, a short
payload, trailing data) is one :class:`~torchrl_ext.format.FormatError` line
naming the source; errors of the source itself (``OSError`` of a disk or a
network) pass through.

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
from typing import IO, Any

import numpy as np

from ..format import FormatError
from .npy_header import MAX_ARRAY_BYTES, NpyHeader, check_size, read_npy_header

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
    "MAX_DEFLATE_RATIO",
    "NpyGzReader",
    "copy_npy",
    "load_npy_gz",
    "open_gzip",
]

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_BYTES = 16 << 20
#: deflate's largest expansion: a 258-byte match coded in 2 bits
MAX_DEFLATE_RATIO = 1032
GZIP_BACKEND = _gzip_impl.__name__
# Errors of the gzip layer only; an OSError of the source itself (disk, network) passes through.
_DECOMPRESS_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error, *_EXTRA_ERRORS)
_FIRST_PIECE = 1 << 20


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


def _source_bytes(src: str | os.PathLike | IO[bytes]) -> int | None:
    """Bytes left in a path or seekable file object; ``None`` when that cannot be known."""
    try:
        if not hasattr(src, "read"):
            return os.stat(src).st_size
        if not src.seekable():
            return None
        here = src.tell()
        end = src.seek(0, os.SEEK_END)
        src.seek(here)
        return max(end - here, 0)
    except (OSError, ValueError, AttributeError):
        return None


def _check(header: NpyHeader, name: str, dtype: Any, ndim: int | None, tail: tuple[int, ...] | None) -> None:
    if dtype is not None and header.dtype != np.dtype(dtype):
        raise FormatError(f"{name}: expected dtype {np.dtype(dtype)}, found {header.dtype}; not a replay-log column")
    if ndim is not None and len(header.shape) != ndim:
        raise FormatError(f"{name}: expected a {ndim}-d array, found shape {header.shape}")
    if tail is not None and header.shape[1:] != tail:
        raise FormatError(f"{name}: expected per-row shape {tail}, found shape {header.shape}")
    if header.fortran_order and len(header.shape) > 1:
        raise FormatError(f"{name}: Fortran-ordered arrays are not supported; expected C order")


class NpyGzReader:
    """The payload of one gzip-wrapped ``.npy`` array, read front to back in caller-sized pieces.

    Args:
        src: a path or a readable binary file object holding the gzip data.
        name: how errors name the source (default: the path).
        dtype, ndim, tail: expected dtype, number of dimensions and per-row shape.
        max_bytes: the largest payload accepted (``MAX_ARRAY_BYTES`` applies whatever it is).
        compressed_bytes: size of the gzip data when ``src`` cannot tell (an object
            listing's size, for example); bounds the payload a header may promise.
        threaded: inflate in a background thread (see :func:`open_gzip`).

    Every problem of the file is a :class:`~torchrl_ext.format.FormatError`
    naming the source: corrupt or truncated gzip, bad header, unexpected dtype
    or shape, a payload larger than ``max_bytes`` or than the source can hold,
    a short payload, trailing data.

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
                 ndim: int | None = None, tail: tuple[int, ...] | None = None, max_bytes: int = MAX_ARRAY_BYTES,
                 compressed_bytes: int | None = None, threaded: bool = False) -> None:
        self.name = name if name is not None else (os.fspath(src) if not hasattr(src, "read") else "<stream>")
        self._stream: IO[bytes] | None = None
        self._scratch: bytearray | None = None
        size = compressed_bytes if compressed_bytes is not None else _source_bytes(src)
        try:
            self._stream = open_gzip(src, threaded=threaded)
            self.header = read_npy_header(self._stream, self.name)
            _check(self.header, self.name, dtype, ndim, tail)
            check_size(self.header, self.name, max_bytes)
            if size is not None and self.header.nbytes > size * MAX_DEFLATE_RATIO:
                raise FormatError(
                    f"{self.name}: npy header promises {self.header.nbytes} bytes (shape {self.header.shape}), "
                    f"more than {size} compressed bytes can hold (at most {MAX_DEFLATE_RATIO}x); the file is "
                    "truncated or corrupt, download it again"
                )
        except _DECOMPRESS_ERRORS as err:
            self.close()
            raise self._gzip_error(err) from err
        except BaseException:
            self.close()
            raise
        self.left = self.header.nbytes

    def _gzip_error(self, err: BaseException) -> FormatError:
        return FormatError(f"{self.name}: not a valid gzip stream ({type(err).__name__}: {err}); "
                           "download the file again")

    def _truncated(self, got: int) -> FormatError:
        h = self.header
        return FormatError(
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
        except _DECOMPRESS_ERRORS as err:
            raise self._gzip_error(err) from err
        self.left -= n

    def skip(self, nbytes: int, chunk_bytes: int = 4 << 20) -> None:
        """Reads and drops the next ``nbytes`` payload bytes."""
        if nbytes > self.left:
            raise ValueError(f"{self.name}: asked to skip {nbytes} bytes, only {self.left} of the npy payload are left")
        if self._scratch is None or len(self._scratch) < min(chunk_bytes, nbytes):
            self._scratch = bytearray(min(chunk_bytes, max(nbytes, 1)))  # grown, never kept at a small first size
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
                raise FormatError(f"{self.name}: unexpected data after the npy payload of shape "
                                  f"{self.header.shape}; the file is corrupt, download it again")
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
        FormatError: corrupt or truncated gzip, bad header, unexpected dtype/shape.
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
    compressed_bytes: int | None = None,
) -> np.ndarray:
    """Loads a small gzip-compressed ``.npy`` array into memory.

    The payload is read in pieces that double in size, so memory follows the
    bytes that actually arrive (at most twice them) whatever the header promises.

    Raises:
        FormatError: anything :class:`NpyGzReader` refuses, including a payload over ``max_bytes``.
    """
    with NpyGzReader(src, name=name, dtype=dtype, ndim=ndim, max_bytes=max_bytes,
                     compressed_bytes=compressed_bytes) as reader:
        header = reader.header
        pieces: list[np.ndarray] = []
        while reader.left:
            piece = np.empty(min(reader.left, max(_FIRST_PIECE, header.nbytes - reader.left)), np.uint8)
            reader.readinto(memoryview(piece))
            pieces.append(piece)
        reader.finish()
    flat = pieces[0] if len(pieces) == 1 else np.concatenate(pieces) if pieces else np.empty(0, np.uint8)
    return flat.view(header.dtype).reshape(header.shape)
