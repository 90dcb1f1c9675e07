"""MineStudio's image chunks (one mp4 file per ``chunk_size`` frames) as chunks of a ``video`` column.

Passthrough: an h264 chunk whose packets form one self-contained group of
pictures — exactly ``frames`` packets, the first a key frame — is stored
without decoding. Its packets are demuxed, turned from the mp4 form (AVCC,
parameter sets in the container's extradata) into Annex B with FFmpeg's
``h264_mp4toannexb`` bitstream filter (which puts the parameter sets in front
of the key frame) and packed as :func:`torchrl_ext.encodings.video_codec.pack_packets`
specifies. B-frames need nothing special: the packets stay in decoding order
and the decoder returns the frames in display order. Any other chunk is
decoded once (:func:`decode_mp4`) and re-encoded by the column's codec.

Checking a passed-through chunk (:func:`check_decodes`): MineStudio keeps no
checksum of its chunks, so damage that happened before the import would be
checksummed with the rest. Decoding the packets once, as they will be stored,
finds the damage the decoder notices: ``err_detect=explode`` makes FFmpeg's
h264 decoder stop at an error it would otherwise conceal (a guessed block,
silently). Damage that still parses as valid h264 decodes to wrong pixels
and cannot be found without a copy of the source.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...format import FormatError

__all__ = [
    "STRICT_DECODE",
    "NotPassthrough",
    "StreamParams",
    "check_decodes",
    "decode_mp4",
    "mp4_to_payload",
    "probe_mp4",
]

_FIX = "the chunk is corrupt; re-run MineStudio's conversion for this episode"
# libavcodec options of the check: stop at an error instead of concealing it; no deblocking (the frames are
# dropped, and the errors the decoder notices are found while parsing: the same ones with and without it)
STRICT_DECODE = {"err_detect": "explode", "skip_loop_filter": "all"}


class NotPassthrough(Exception):
    """The chunk decodes but cannot be stored as it is (the reason is the message)."""


def _av() -> Any:
    try:
        import av
    except ImportError as err:
        raise ImportError(
            f"reading MineStudio image chunks needs PyAV ({err}); pip install torchrl-ext[minestudio]"
        ) from err
    return av


@dataclass(frozen=True)
class StreamParams:
    """The video stream of a chunk: codec name, pixel format and frame size."""

    codec: str
    pix_fmt: str | None
    height: int
    width: int


def _open(data: bytes, where: str) -> tuple[Any, Any]:
    av = _av()
    try:
        container = av.open(io.BytesIO(data), "r")
    except (av.error.FFmpegError, ValueError) as err:
        raise FormatError(f"{where}: not a readable mp4 ({err}); {_FIX}") from err
    if not container.streams.video:
        container.close()
        raise FormatError(f"{where}: the mp4 holds no video stream; {_FIX}")
    return container, container.streams.video[0]


def probe_mp4(data: bytes, where: str) -> StreamParams:
    """The stream parameters of one mp4 chunk (``FormatError`` when it is not a readable video)."""
    container, stream = _open(data, where)
    try:
        ctx = stream.codec_context
        return StreamParams(ctx.name, ctx.pix_fmt, int(ctx.height), int(ctx.width))
    finally:
        container.close()


def mp4_to_payload(data: bytes, frames: int, where: str) -> tuple[list[bytes], StreamParams]:
    """The Annex B packets of one h264 mp4 chunk holding ``frames`` frames, ready for ``pack_packets``.

    Raises:
        NotPassthrough: not h264, a packet count other than ``frames``, or no
            key frame first (the caller re-encodes).
        FormatError: the mp4 cannot be read.
    """
    av = _av()
    container, stream = _open(data, where)
    try:
        ctx = stream.codec_context
        params = StreamParams(ctx.name, ctx.pix_fmt, int(ctx.height), int(ctx.width))
        if params.codec != "h264":
            raise NotPassthrough(f"codec {params.codec!r}, not h264")
        packets: list[bytes] = []
        first_key = None
        try:
            bsf = av.bitstream.BitStreamFilterContext("h264_mp4toannexb", stream)
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                for out in bsf.filter(packet):
                    if first_key is None:
                        first_key = bool(out.is_keyframe)
                    packets.append(bytes(out))
            for out in bsf.filter(None):
                packets.append(bytes(out))
        except av.error.FFmpegError as err:
            raise FormatError(f"{where}: demuxing the mp4 failed ({err}); {_FIX}") from err
    finally:
        container.close()
    if len(packets) != frames:
        raise NotPassthrough(f"{len(packets)} packets for {frames} frames")
    if not first_key:
        raise NotPassthrough("the first packet is not a key frame")
    return packets, params


def decode_mp4(data: bytes, where: str, frames: int | None = None) -> np.ndarray:
    """Every frame of one mp4 chunk as RGB ``uint8 [n, H, W, 3]`` (PyAV's ``to_ndarray(format="rgb24")``).

    Raises:
        FormatError: unreadable, or not ``frames`` frames when ``frames`` is given.
    """
    av = _av()
    container, stream = _open(data, where)
    try:
        out = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    except av.error.FFmpegError as err:
        raise FormatError(f"{where}: decoding the mp4 failed ({err}); {_FIX}") from err
    finally:
        container.close()
    if not out or (frames is not None and len(out) != frames):
        raise FormatError(f"{where}: the mp4 decodes to {len(out)} frames, expected {frames}; {_FIX}")
    return np.stack(out)


def check_decodes(packets: list[bytes], frames: int, where: str) -> None:
    """Decodes the Annex B packets of one h264 chunk once, strictly (:data:`STRICT_DECODE`), frames dropped.

    Args:
        packets: what :func:`mp4_to_payload` returned, as it will be stored.
        frames: the frames the chunk must yield.
        where: the chunk's source, for the error.

    Raises:
        FormatError: the decoder reports an error, or yields another number of frames.
    """
    av = _av()
    ctx = av.CodecContext.create("h264", "r")
    ctx.options = dict(STRICT_DECODE)
    ctx.thread_count = 1  # the same error at the same packet on every machine
    fix = ("the source is damaged and has no checksum of its own; download this part again (or re-run "
           "MineStudio's conversion), or import with check_decode=False (--no-check-decode) to store it as it is")
    got = 0
    try:
        for packet in [*packets, None]:
            got += len(ctx.decode(None if packet is None else av.Packet(packet)))
    except av.error.FFmpegError as err:
        raise FormatError(f"{where}: the h264 decoder stopped at an error after {got} of {frames} frames "
                          f"({err}); {fix}") from err
    if got != frames:
        raise FormatError(f"{where}: the chunk decodes to {got} frames, expected {frames}; {fix}")
