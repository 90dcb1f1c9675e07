"""The zstd frames of a batch as bytes: every header checked at once, and the scratch arrays of a batch.

:func:`frames_are_checked` is a few numpy calls per batch, whatever its
number of frames; :data:`workspace` keeps a thread's scratch arrays between
batches.
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["Workspace", "frames_are_checked", "workspace"]

_MAGIC = 0xFD2FB528  # a zstd frame's first four bytes, little-endian
_DICT_ID_BYTES = np.array([0, 1, 2, 4], np.int64)
_SIZE_BYTES = np.array([0, 2, 4, 8], np.int64)  # by Frame_Content_Size_flag; 0 means 1 with Single_Segment
_SIZE_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], np.uint64)
_EIGHT = np.arange(8, dtype=np.int64)[None, :]
_WORKSPACE_MAX = 64 << 20  # bytes of scratch kept per thread between batches


def frames_are_checked(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, content: np.ndarray) -> bool:
    """True when every ``data[starts[i]:starts[i] + lengths[i]]`` opens a zstd frame with a content
    checksum and a content size of ``content[i]`` bytes (all headers read at once).

    A frame that passes cannot decode into another frame's rows, and zstd
    checks its content against the checksum as it decodes.

    >>> import zstandard
    >>> frame = zstandard.ZstdCompressor(write_checksum=True).compress(b"abc" * 100)
    >>> data = np.frombuffer(frame * 2, np.uint8)
    >>> starts, lengths = np.array([0, len(frame)]), np.array([len(frame)] * 2)
    >>> frames_are_checked(data, starts, lengths, np.array([300, 300])), frames_are_checked(data, starts, lengths, np.array([300, 299]))
    (True, False)
    """
    if not starts.size:
        return True
    if not data.size:
        return False
    head = np.take(data, starts[:, None] + _EIGHT, mode="clip").view("<u8")[:, 0]
    descriptor = ((head >> np.uint64(32)) & np.uint64(0xFF)).astype(np.int64)
    single = (descriptor >> 5) & 1
    size_flag = descriptor >> 6
    size = np.where((size_flag == 0) & (single == 1), 1, _SIZE_BYTES[size_flag])
    field = 5 + (1 - single) + _DICT_ID_BYTES[descriptor & 3]  # where the content size starts
    raw = np.take(data, (starts + field)[:, None] + _EIGHT, mode="clip").view("<u8")[:, 0]
    value = (raw & _SIZE_MASKS[size]) + (size == 2).astype(np.uint64) * np.uint64(256)
    ok = (((head & np.uint64(0xFFFFFFFF)) == _MAGIC) & (descriptor & 0x0C == 0x04) & (size > 0)
          & (lengths >= field + size + 3 + 4) & (value == content.astype(np.uint64)))
    return bool(ok.all())


class Workspace(threading.local):
    """Scratch arrays kept per thread between batches: a fresh multi-megabyte array per batch costs a
    page fault per 4 KiB once the allocator has handed the memory back to the system.

    >>> w = Workspace()
    >>> a = w.get("x", (4,), np.int64)
    >>> b = w.get("x", (2, 2), np.int64)
    >>> bool(np.shares_memory(a, b))
    True
    """

    def __init__(self) -> None:
        self.buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
        """An uninitialised ``shape`` array of ``dtype``, the same memory as the last one of ``name``.

        Only for arrays that do not outlive the batch (never one handed to a caller).
        """
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes > _WORKSPACE_MAX:
            return np.empty(shape, dtype)
        buf = self.buffers.get(name)
        if buf is None or buf.nbytes < nbytes:
            buf = self.buffers[name] = np.empty(max(nbytes, 1 << 16), np.uint8)
        return buf[:nbytes].view(dtype).reshape(shape)


workspace = Workspace()
