"""The ``zstd`` codec: a chunk is one zstandard frame of the rows' C-order bytes.

Frames carry their content size and a content checksum. Decompression
contexts are not thread-safe, so each thread (and each forked worker) gets its
own.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import zstandard

from .options import Zstd

__all__ = ["ZstdCodec", "make_codec", "train_dictionary"]


class ZstdCodec:
    """Compresses and decompresses chunks of rows of one column.

    >>> codec = ZstdCodec(Zstd(), np.dtype("int16"), (2,))
    >>> rows = np.arange(8, dtype=np.int16).reshape(4, 2)
    >>> bool((codec.decode(codec.encode(rows), 4) == rows).all())
    True
    """

    def __init__(
        self, options: Zstd, dtype: np.dtype, shape: tuple[int, ...], dictionary: bytes | None = None
    ) -> None:
        if options.dictionary and dictionary is None:
            raise ValueError(
                "`dictionary` bytes are required: the encoding was made with dictionary=True; "
                "pass the dictionary stored with the dataset"
            )
        if not options.dictionary and dictionary is not None:
            raise ValueError(
                "`dictionary` was given but the encoding has dictionary=False; "
                "use Zstd(dictionary=True) or drop the dictionary"
            )
        self.options = options
        self.dtype = np.dtype(dtype)
        self.shape = tuple(shape)
        self.row_bytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        self._dict = zstandard.ZstdCompressionDict(dictionary) if dictionary is not None else None
        self._local = threading.local()

    def encode(self, rows: np.ndarray) -> bytes:
        """Compresses ``rows`` (``[n, *shape]`` of the codec's dtype) into one frame."""
        local = self._local
        if getattr(local, "cctx_pid", None) != os.getpid():
            local.cctx = zstandard.ZstdCompressor(
                level=self.options.level,
                dict_data=self._dict,
                write_checksum=True,
                write_content_size=True,
            )
            local.cctx_pid = os.getpid()
        return local.cctx.compress(np.ascontiguousarray(rows).reshape(-1).view(np.uint8))

    def _dctx(self) -> zstandard.ZstdDecompressor:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.dctx = zstandard.ZstdDecompressor(dict_data=self._dict)
            local.pid = os.getpid()
        return local.dctx

    def decode(
        self, payload: object, n_rows: int, stop: int | None = None, out: np.ndarray | None = None, first: int = 0
    ) -> np.ndarray:
        """Decompresses one chunk of ``n_rows`` rows.

        Without ``out``, returns all rows as a read-only ``[n_rows, *shape]`` array
        (``stop`` is accepted for parity with the video codec: a zstd frame is
        always decoded whole). With ``out``, copies rows ``[first, first + len(out))``
        into it and returns it.

        Raises:
            ValueError: when the frame is damaged or holds a different number of bytes.
        """
        expected = n_rows * self.row_bytes
        try:
            size = zstandard.frame_content_size(payload)
            if size != expected:
                raise ValueError(f"frame content size is {size} bytes, expected {expected}")
            data = self._dctx().decompress(payload)
        except zstandard.ZstdError as err:
            raise ValueError(f"zstd decompression failed ({err})") from err
        if len(data) != expected:
            raise ValueError(f"decompressed {len(data)} bytes, expected {expected}")
        rows = np.frombuffer(data, dtype=self.dtype).reshape(n_rows, *self.shape)
        if out is None:
            return rows
        out[...] = rows[first : first + len(out)]
        return out

    def decode_frames(self, frames: bytes | memoryview | np.ndarray, out: np.ndarray, last_size: int) -> None:
        """Decompresses concatenated whole frames straight into ``out`` in one call (the GIL released).

        zstd checks each frame's content size and content checksum as it goes;
        the frames must fill ``out`` exactly. The last frame (its final
        ``last_size`` bytes) is also decoded on its own, which proves it ends
        where its bytes end: a stream that stops inside a frame is not an
        error to zstd, and its checksum would go unchecked.

        Args:
            frames: the frames' bytes, back to back (any contiguous buffer).
            out: a C-contiguous writable array; its bytes receive the content.
            last_size: bytes of the last frame.

        Raises:
            ValueError: when a frame is damaged, or the frames hold more or
                fewer bytes than ``out``.

        >>> codec = ZstdCodec(Zstd(), np.dtype("uint8"), (3,))
        >>> a, b = codec.encode(np.arange(6, dtype=np.uint8).reshape(2, 3)), codec.encode(np.full((1, 3), 9, np.uint8))
        >>> out = np.empty((3, 3), np.uint8)
        >>> codec.decode_frames(a + b, out, len(b))
        >>> out.tolist()
        [[0, 1, 2], [3, 4, 5], [9, 9, 9]]
        """
        view = out.reshape(-1).view(np.uint8)
        dctx = self._dctx()
        try:
            reader = dctx.stream_reader(frames, read_across_frames=True)
            got = reader.readinto(view)
            extra = reader.readinto(bytearray(1)) if got == view.nbytes else 0  # bytes left over
            if got == view.nbytes and not extra:
                whole = memoryview(frames).cast("B")
                dctx.decompress(whole[len(whole) - last_size :], allow_extra_data=False)
        except zstandard.ZstdError as err:
            raise ValueError(f"zstd decompression failed ({err})") from err
        if got != view.nbytes or extra:
            raise ValueError(f"frames hold {'more than ' if extra else ''}{got} bytes, expected {view.nbytes}")


def make_codec(
    options: Zstd, dtype: np.dtype, shape: tuple[int, ...], dictionary: bytes | None = None
) -> ZstdCodec:
    return ZstdCodec(options, dtype, shape, dictionary)


def train_dictionary(rows: np.ndarray, dict_size: int = 16 * 1024, level: int = 1) -> bytes:
    """Trains a zstandard dictionary on sample rows (one sample per row) for ``Zstd(dictionary=True)``.

    Args:
        rows: ``[n, *shape]`` sample rows; a few hundred rows from several
            episodes work well.
        dict_size: dictionary size in bytes.
        level: compression level the dictionary is tuned for.

    Raises:
        ValueError: when there are too few or too small samples to train on.
    """
    rows = np.ascontiguousarray(rows)
    if rows.ndim < 1 or len(rows) < 8:
        raise ValueError(f"`rows` must hold at least 8 sample rows, got shape {rows.shape}")
    if not isinstance(dict_size, int) or dict_size < 256:
        raise ValueError(f"`dict_size` must be an int >= 256, got {dict_size!r}")
    samples = [r.tobytes() for r in rows]
    try:
        trained = zstandard.train_dictionary(dict_size, samples, level=level)
    except zstandard.ZstdError as err:
        raise ValueError(
            f"could not train a zstd dictionary on {len(rows)} rows of {rows.nbytes // len(rows)} "
            f"bytes ({err}); give more or larger sample rows, or a smaller `dict_size`"
        ) from err
    return trained.as_bytes()
