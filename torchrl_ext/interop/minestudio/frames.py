"""The ``image`` entry of MineStudio items: window frames decoded straight into the batch buffer.

MineStudio 1.1.6's ``ImageKernelCallback.do_decode`` converts every decoded
frame with ``frame.to_ndarray(format="rgb24")`` and, when its size differs
from ``frame_width`` x ``frame_height``, resizes it with
``cv2.resize(..., interpolation=cv2.INTER_LINEAR)``. The same two steps run
here, frame by frame, so the pixels are the same; what differs is the work
around them. Each window's rows are decoded from the video chunks that hold
them, from a chunk's key frame up to the window's last row and no further
(frames before the window's first row are decoded only as references, and
never converted); frames of the stored size are converted into the window's
slot of the output, other sizes are resized chunk by chunk from one reused
buffer of a chunk's frames.
No decoded chunk is kept between windows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["WindowFrames"]


class WindowFrames:
    """Fills ``[n, T, height, width, 3]`` uint8 buffers with the frames of windows of one imported dataset.

    Args:
        storage: the dataset's storage (its manifest names the shards and the
            ``("image",)`` column).
        width, height: the item's frame size.

    The shard column readers are opened on first use in each process and
    decode on the calling thread (DataLoader workers are the parallelism).
    """

    def __init__(self, storage: Any, width: int, height: int) -> None:
        self.storage = storage
        self.width, self.height = width, height
        manifest = storage.manifest
        self.column = manifest.column(("image",))
        self.stored = tuple(self.column.shape)
        self.shards = list(manifest.shards)
        self.offsets = np.concatenate(([0], np.cumsum([s.rows for s in self.shards]))).astype(np.int64)
        self._readers: dict[int, Any] = {}
        self._scratch: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_readers": {}, "_scratch": None}

    def _reader(self, shard: int) -> tuple[Any, Any]:
        """The shard's column reader and its chunk index (where each chunk starts)."""
        got = self._readers.get(shard)
        if got is None:
            from ...encodings import encoded_column_reader

            info = self.shards[shard]
            reader = encoded_column_reader(self.storage.root / info.dir, self.column, info.rows, None, threads=1,
                                           root=self.storage.root)
            got = self._readers[shard] = (reader, reader.index)
        return got

    @property
    def resized(self) -> bool:
        return self.stored[:2] != (self.height, self.width)

    def fill(self, rows: np.ndarray, mask: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Frames of global ``rows`` (``[n, T]``) where ``mask`` is set, zeros elsewhere, into ``out``."""
        if self.resized:
            import cv2

            if torch.utils.data.get_worker_info() is not None:
                cv2.setNumThreads(1)  # DataLoader workers are the parallelism; idle OpenCV threads abort at exit
        for k in range(rows.shape[0]):
            valid = mask[k]
            m = int(np.count_nonzero(valid))
            if m == 0:
                out[k] = 0
            elif valid[:m].all():  # inside the episode, then padding: the usual window
                self._window(rows[k, :m], out[k, :m])
                if m < len(valid):
                    out[k, m:] = 0
            else:
                pos = np.flatnonzero(valid)
                part = np.empty((m, self.height, self.width, 3), np.uint8)
                self._window(rows[k, pos], part)
                out[k] = 0
                out[k, pos] = part
        return out

    def _window(self, rows: np.ndarray, dst: np.ndarray) -> None:
        """Frames of ``rows`` (one window's, increasing) into ``dst`` (``[len(rows), height, width, 3]``)."""
        shard = np.searchsorted(self.offsets, rows, side="right") - 1
        cuts = np.flatnonzero(shard[1:] != shard[:-1]) + 1
        for a, b in zip((0, *cuts.tolist()), (*cuts.tolist(), len(rows))):
            s = int(shard[a])
            if self.column.encoding == "raw":
                src = self.storage.reader.gather_column(("image",), rows[a:b])
                if self.resized:
                    self._resize(src, dst[a:b])
                else:
                    dst[a:b] = src
                continue
            reader, index = self._reader(s)
            local = rows[a:b] - self.offsets[s]
            if not self.resized:
                reader.gather(local, dst[a:b])
                continue
            chunk = index.locate(local)[0]  # chunk by chunk: the stored-size frames stay in cache until resized
            ends = [*(np.flatnonzero(chunk[1:] != chunk[:-1]) + 1).tolist(), len(local)]
            for c0, c1 in zip((0, *ends[:-1]), ends):
                self._resize(reader.gather(local[c0:c1], self._buffer(c1 - c0)), dst[a + c0 : a + c1])

    def _buffer(self, n: int) -> np.ndarray:
        if self._scratch is None or len(self._scratch) < n:
            self._scratch = np.empty((n, *self.stored), np.uint8)
        return self._scratch[:n]

    def _resize(self, src: np.ndarray, dst: np.ndarray) -> None:
        """``ImageKernelCallback.do_decode``'s resize of each RGB frame of ``src`` into ``dst``."""
        import cv2

        size = (self.width, self.height)
        for i in range(len(src)):
            cv2.resize(src[i], size, dst=dst[i], interpolation=cv2.INTER_LINEAR)
