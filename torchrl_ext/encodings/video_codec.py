"""The ``video`` codec: a chunk is one closed GOP of uint8 frames, coded with PyAV and no container.

Chunk payload (little-endian)::

    uint32 n_packets
    uint32 sizes[n_packets]
    bytes  packets            the encoder's packets, concatenated in decoding order

Each chunk is encoded by a fresh encoder (so it starts with the stream
headers and a key frame, and references no other chunk) with key frames every
``gop`` frames, no scene-cut key frames and no B-frames: packet order is frame
order. RGB frames are converted to ``pix_fmt`` with swscale's default BT.601
limited-range matrix (``gbrp`` codes the RGB planes directly with libx264rgb);
gray frames are coded as luma only and read back from the luma plane.

Decoding uses one long-lived decoder per thread and process (and per RGB or
YUV coding: a decoder keeps an RGB stream's colour description), reset with
``flush_buffers()`` before each chunk and drained with ``decode(None)`` at its
end, so every chunk yields exactly its frames in order. A read of part of a
chunk with one packet per frame starts at the last key packet at or before its
first frame (:mod:`.key_frames`: chunks of several groups of pictures, such as
LeRobot's, passed through), and one of an h264 chunk with B-frames (such as
MineStudio's, imported as they are) sends only the packets its frames need
(:mod:`.h264_order`); RGB conversion runs on the calling thread.
"""

from __future__ import annotations

import os
import struct
import threading
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from .h264_order import gop_order, has_non_reference
from .key_frames import key_start
from .options import Video

__all__ = ["VideoCodec", "decoder_name", "encoder_name", "make_codec", "pack_packets"]

_LOCAL = threading.local()
_AV1_ENCODERS = ("libsvtav1",)
_AV1_DECODERS = ("libdav1d", "libaom-av1")


def _available(name: str, mode: str) -> bool:
    try:
        av.codec.Codec(name, mode)
    except Exception:  # noqa: BLE001 - PyAV raises several types for a missing codec
        return False
    return True


def encoder_name(options: Video, gray: bool) -> str:
    """The libavcodec encoder used for ``options`` (raises ValueError when PyAV has none)."""
    if options.codec == "h264":
        return "libx264rgb" if options.pix_fmt == "gbrp" and not gray else "libx264"
    for name in _AV1_ENCODERS:
        if _available(name, "w"):
            return name
    raise ValueError(
        f"codec 'av1' needs a PyAV build with one of the encoders {_AV1_ENCODERS}; this PyAV "
        f"{av.__version__} has none; use Video(codec='h264')"
    )


def decoder_name(codec: str) -> str:
    """The libavcodec decoder used for ``codec`` (raises ValueError when PyAV has none)."""
    if codec == "h264":
        return "h264"
    for name in _AV1_DECODERS:
        if _available(name, "r"):
            return name
    raise ValueError(
        f"codec 'av1' needs a PyAV build with one of the decoders {_AV1_DECODERS}; this PyAV "
        f"{av.__version__} has none"
    )


def _one_thread_kwargs() -> dict[str, int]:
    """``reformat`` keywords for a conversion on the calling thread (PyAV >= 14 defaults to swscale threads).

    One frame is small: waking swscale's threads costs more than they save,
    and readers already decode chunks in parallel.
    """
    frame = av.VideoFrame(16, 16, "yuv420p")
    try:
        VideoReformatter().reformat(frame, format="rgb24", threads=1)
    except TypeError:  # PyAV without the keyword converts on the calling thread
        return {}
    return {"threads": 1}


_REFORMAT_KW = _one_thread_kwargs()


def _thread_decoder(name: str, pix_fmt: str | None = None) -> tuple[av.CodecContext, VideoReformatter]:
    """This thread's decoder for ``name`` and columns coded as ``pix_fmt``: a decoder keeps the colour
    description of the last stream that carried one (``flush_buffers`` does not reset it), so an RGB (``gbrp``)
    stream would make a later YUV stream without one convert as full-range RGB."""
    decoders = getattr(_LOCAL, "decoders", None)
    if getattr(_LOCAL, "pid", None) != os.getpid() or decoders is None:
        decoders = _LOCAL.decoders = {}
        _LOCAL.pid = os.getpid()
    key = (name, pix_fmt == "gbrp")
    if key not in decoders:
        ctx = av.CodecContext.create(name, "r")
        ctx.thread_count = 1
        decoders[key] = (ctx, VideoReformatter())
    return decoders[key]


def pack_packets(packets: list[bytes]) -> bytes:
    """The chunk payload holding ``packets`` (Annex B, decoding order) as specified above.

    For chunks coded elsewhere, e.g. one closed GOP demuxed from a container:
    the packets must start with the stream headers and a key frame and
    reference no other chunk.
    """
    head = struct.pack(f"<I{len(packets)}I", len(packets), *(len(p) for p in packets))
    return head + b"".join(packets)


_pack = pack_packets


def _unpack(payload: object) -> list[memoryview]:
    view = memoryview(payload).cast("B")
    if len(view) < 4:
        raise ValueError(f"chunk payload is {len(view)} bytes, expected at least 4")
    (n,) = struct.unpack_from("<I", view, 0)
    head = 4 + 4 * n
    if head > len(view):
        raise ValueError(f"chunk claims {n} packets but holds only {len(view)} bytes")
    sizes = struct.unpack_from(f"<{n}I", view, 4)
    if head + sum(sizes) != len(view):
        raise ValueError(f"packet sizes add up to {head + sum(sizes)} bytes, the chunk holds {len(view)}")
    packets, pos = [], head
    for size in sizes:
        packets.append(view[pos : pos + size])
        pos += size
    return packets


class VideoCodec:
    """Encodes and decodes GOP chunks of one frame column (``[H, W]``, ``[H, W, 1]`` or ``[H, W, 3]``)."""

    def __init__(self, options: Video, dtype: np.dtype, shape: tuple[int, ...]) -> None:
        self.options = options
        self.dtype = np.dtype(dtype)
        self.shape = tuple(shape)
        self.height, self.width = self.shape[:2]
        self.gray = len(self.shape) == 2 or self.shape[2] == 1
        self.decoder = decoder_name(options.codec)
        self._encoder_name: str | None = None

    @property
    def encoder(self) -> str:
        """The libavcodec encoder, looked up on first use: reading a column needs only a decoder."""
        if self._encoder_name is None:
            self._encoder_name = encoder_name(self.options, self.gray)
        return self._encoder_name

    # -- encoding ---------------------------------------------------------------------------
    def _encoder(self) -> av.CodecContext:
        ctx = av.CodecContext.create(self.encoder, "w")
        ctx.width, ctx.height = self.width, self.height
        ctx.time_base = Fraction(1, 30)
        ctx.framerate = Fraction(30, 1)
        ctx.gop_size = self.options.gop
        gop, crf, preset = self.options.gop, str(self.options.crf), str(self.options.preset)
        if self.encoder.startswith("libx264"):
            if self.encoder == "libx264rgb":
                ctx.pix_fmt = "rgb24"
            else:
                ctx.pix_fmt = "gray" if self.gray else self.options.pix_fmt
            params = f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0"
            ctx.options = {"crf": crf, "preset": preset, "x264-params": params}
        else:
            ctx.pix_fmt = "yuv420p"
            ctx.options = {"crf": crf, "preset": preset, "svtav1-params": f"keyint={gop}:scd=0"}
        return ctx

    def _frame(self, row: np.ndarray, pix_fmt: str) -> av.VideoFrame:
        if self.gray:
            y = row.reshape(self.height, self.width)
            if pix_fmt == "gray":
                return av.VideoFrame.from_ndarray(np.ascontiguousarray(y), format="gray")
            planes = np.full((self.height * 3 // 2, self.width), 128, dtype=np.uint8)
            planes[: self.height] = y
            return av.VideoFrame.from_ndarray(planes, format="yuv420p")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(row), format="rgb24")
        return frame if pix_fmt == "rgb24" else frame.reformat(format=pix_fmt)

    def encode(self, rows: np.ndarray) -> bytes:
        """Encodes ``rows`` (``[n, *shape]`` uint8) as one closed GOP; returns the chunk payload."""
        ctx = self._encoder()
        pix_fmt = ctx.pix_fmt
        packets: list[bytes] = []
        for i, row in enumerate(rows):
            frame = self._frame(row, pix_fmt)
            frame.pts = i
            packets.extend(bytes(p) for p in ctx.encode(frame))
        packets.extend(bytes(p) for p in ctx.encode(None))
        return _pack(packets)

    # -- decoding ---------------------------------------------------------------------------
    def _store(self, frame: av.VideoFrame, out: np.ndarray, i: int, reformatter: VideoReformatter) -> None:
        if frame.width != self.width or frame.height != self.height:
            raise ValueError(
                f"decoded a {frame.height}x{frame.width} frame, expected {self.height}x{self.width}"
            )
        if self.gray:
            plane = frame.planes[0]
            y = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: self.height, : self.width]
            out[i].reshape(self.height, self.width)[...] = y
        elif frame.format.name == "gbrp":
            g, b, r = (
                np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[: self.height, : self.width]
                for p in frame.planes
            )
            out[i, :, :, 0], out[i, :, :, 1], out[i, :, :, 2] = r, g, b
        else:
            out[i] = reformatter.reformat(frame, format="rgb24", **_REFORMAT_KW).to_ndarray()

    def decode(
        self, payload: object, n_rows: int, stop: int | None = None, out: np.ndarray | None = None, first: int = 0
    ) -> np.ndarray:
        """Decodes a chunk of ``n_rows`` frames.

        Without ``out``, returns frames ``[0, stop)`` (all by default). With
        ``out``, stores frames ``[first, first + len(out))`` into it and returns it;
        the frames before ``first`` are decoded only as references.

        Raises:
            ValueError: when the payload is damaged or yields a different number of frames.
        """
        if out is None:
            stop = n_rows if stop is None else max(0, min(stop, n_rows))
            out = np.empty((stop, *self.shape), dtype=np.uint8)
            first = 0
        else:
            stop = first + len(out)
            if not 0 <= first <= stop <= n_rows:
                raise ValueError(f"frames [{first}, {stop}) are not in a chunk of {n_rows}")
        packets = _unpack(payload)
        if stop == first:
            return out
        ctx, reformatter = _thread_decoder(self.decoder, self.options.pix_fmt)
        per_frame = len(packets) == n_rows
        key = key_start(self.options.codec, packets, first) if per_frame and first > 0 else None
        try:
            part = (first > 0 or stop < n_rows) and self.decoder == "h264" and per_frame
            done = part and self._decode_part(ctx, reformatter, packets, first, out, key)
            if not done and not (key and self._decode_from_key(ctx, reformatter, packets, n_rows, first, out, key)):
                self._decode_all(ctx, reformatter, packets, n_rows, first, out)
        except av.error.FFmpegError as err:
            raise ValueError(f"{self.decoder} could not decode the chunk ({err})") from err
        return out

    def _decode_from_key(self, ctx: av.CodecContext, reformatter: VideoReformatter, packets: list[memoryview],
                         n_rows: int, first: int, out: np.ndarray, key: tuple[int, bytes]) -> bool:
        """Frames ``[first, first + len(out))`` decoded from the key packet ``key = (k, its bytes)``.

        Returns False (the caller then decodes from the chunk's start, which
        reports a damaged chunk) when the decoder refuses a packet or the frame
        count is not the chunk's.
        """
        k, packet = key
        try:
            self._decode_all(ctx, reformatter, [packet, *packets[k + 1 :]], n_rows, first, out, k)
        except (ValueError, av.error.FFmpegError):
            return False
        return True

    def _decode_all(self, ctx: av.CodecContext, reformatter: VideoReformatter, packets: list[memoryview | bytes],
                    n_rows: int, first: int, out: np.ndarray, start: int = 0) -> None:
        """Frames ``[first, first + len(out))``, every packet up to the last of them decoded in order; the first
        packet yields frame ``start`` (the chunk's first, or a key packet's)."""
        stop = first + len(out)
        ctx.flush_buffers()
        got = start
        for pkt in [*packets, None]:
            for frame in ctx.decode(None if pkt is None else av.Packet(pkt)):
                if got >= n_rows:
                    raise ValueError(f"the chunk yields more than {n_rows} frames")
                if first <= got < stop:
                    self._store(frame, out, got - first, reformatter)
                got += 1
            if got >= stop and stop < n_rows:
                break
        if got < stop:
            raise ValueError(f"the chunk yields {got} frames, expected {n_rows}")

    def _decode_part(self, ctx: av.CodecContext, reformatter: VideoReformatter, packets: list[memoryview],
                     first: int, out: np.ndarray, key: tuple[int, bytes] | None = None) -> bool:
        """Frames ``[first, first + len(out))`` from only the packets they need (:mod:`.h264_order`).

        Non-reference pictures outside the range are not decoded, no packet
        before the key packet ``key = (k, its bytes)`` (an IDR picture shown at
        ``k``) and none after the last needed one is sent. Each packet carries its display
        position as pts and the decoder hands it back on the frame, so a frame
        is stored where the decoder's own order puts it. Returns False (the
        caller then decodes everything) when the headers are not understood or
        the decoder's order disagrees with them.
        """
        if not has_non_reference(packets):
            return False  # nothing to leave out
        order = gop_order(packets)
        if order is None:
            return False
        stop = first + len(out)
        k, key_packet = key if key is not None and order.display[key[0]] == key[0] else (0, packets[0])
        ctx.flush_buffers()
        last, stored = -1, 0
        for i in [*(i for i in order.needed(first, stop) if i >= k), None]:
            if i is None:
                frames = ctx.decode(None)
            else:
                pkt = av.Packet(key_packet if i == k else packets[i])
                pkt.pts = order.display[i]
                frames = ctx.decode(pkt)
            for frame in frames:
                d = frame.pts
                if d is None or d <= last:
                    return False
                last = d
                if first <= d < stop:
                    self._store(frame, out, d - first, reformatter)
                    stored += 1
        return stored == stop - first


def make_codec(
    options: Video, dtype: np.dtype, shape: tuple[int, ...], dictionary: bytes | None = None
) -> VideoCodec:
    if dictionary is not None:
        raise ValueError("`dictionary` applies to the zstd encoding only; the video encoding takes none")
    return VideoCodec(options, dtype, shape)
