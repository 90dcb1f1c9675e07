"""The mp4 of one camera in LeRobot's v3.0 layout: episodes back to back, each starting on a key frame.

Frame ``t`` of the ``k``-th frame overall is shown at ``k / fps`` (stream time
base ``1 / fps``), so an episode that starts after ``K`` frames has
``from_timestamp = K / fps`` and ``to_timestamp = (K + T) / fps``, exactly
what LeRobot's reader adds to the rows' ``timestamp`` (``t / fps``). The first
frame of every episode is forced to be an IDR picture, so an episode decodes
alone (and the import here stores it without decoding). No B-frames.

Encoding: ``crf=0`` (the default of :func:`~torchrl_ext.interop.lerobot.export_lerobot`)
codes the RGB planes losslessly with libx264rgb (stream pixel format
``gbrp``), so LeRobot decodes exactly the frames stored here; ``crf > 0`` uses
libx264 with ``yuv420p`` (even frame sizes) or ``yuv444p``, LeRobot's usual
lossy form. Key frames every ``gop`` frames (LeRobot writes ``g=2``).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Mp4Episodes"]


class Mp4Episodes:
    """Appends episodes of ``uint8 [T, H, W, 3]`` frames to one new mp4.

    Args:
        path: the file to create (its directory must exist).
        fps: frames per second.
        height, width: frame size.
        crf: 0 for lossless RGB, else libx264's constant rate factor (1..51).
        gop: frames between key frames.
    """

    def __init__(self, path: Path, fps: int, height: int, width: int, *, crf: int = 0, gop: int = 2) -> None:
        import av

        self.path, self.fps, self.frames = path, fps, 0
        self.container = av.open(str(path), "w", format="mp4")
        lossless = crf == 0
        self.stream = self.container.add_stream("libx264rgb" if lossless else "libx264", rate=fps)
        self.stream.width, self.stream.height = width, height
        self.pix_fmt = "rgb24" if lossless else ("yuv420p" if height % 2 == 0 and width % 2 == 0 else "yuv444p")
        self.stream.pix_fmt = self.pix_fmt
        self.stream.time_base = Fraction(1, fps)
        self.stream.codec_context.time_base = Fraction(1, fps)
        params = f"keyint={gop}:min-keyint=1:scenecut=0:bframes=0:forced-idr=1"
        self.stream.options = {"crf": str(crf), "preset": "veryfast", "x264-params": params}
        self._key = av.video.frame.PictureType.I

    @property
    def stored_pix_fmt(self) -> str:
        """The pixel format a decoder reports (``gbrp`` for lossless RGB)."""
        return "gbrp" if self.pix_fmt == "rgb24" else self.pix_fmt

    def add_episode(self, frames: np.ndarray) -> tuple[float, float]:
        """Encodes one episode's frames; returns its ``(from_timestamp, to_timestamp)``."""
        import av

        start = self.frames
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            if self.pix_fmt != "rgb24":
                frame = frame.reformat(format=self.pix_fmt)
            frame.pts = self.frames
            frame.time_base = Fraction(1, self.fps)
            if i == 0:
                frame.pict_type = self._key
            self._mux(self.stream.encode(frame))
            self.frames += 1
        return start / self.fps, self.frames / self.fps

    def _mux(self, packets: Any) -> None:
        for packet in packets:
            self.container.mux(packet)

    def close(self) -> None:
        """Flushes the encoder and finishes the file."""
        self._mux(self.stream.encode(None))
        self.container.close()
