"""One episode's frames out of a LeRobot mp4 that holds several episodes, as stored chunks or decoded frames.

LeRobot concatenates the episodes of a camera into one mp4 (stream copy, no
re-encoding), each episode encoded on its own, so each starts with a key
frame. Frame ``t`` of an episode is the picture shown at ``from_timestamp +
timestamp[t]``; LeRobot's reader seeks there and takes the nearest decoded
picture within ``tolerance_s`` (1e-4 s). Reading one episode here: seek to
``from_timestamp``, demux until the decoding timestamp passes
``to_timestamp``, keep the pictures shown in ``[from, to)`` (half a frame of
slack at both ends), then match each row to its nearest picture the same way.

Passthrough (h264 and AV1, when the column's video codec is the stream's):
when the episode's pictures match its rows one to one and it starts on a key
frame, its packets are cut before key frames into chunks of at most
``chunk_rows`` frames, each packed by
:func:`torchrl_ext.encodings.video_codec.pack_packets` and handed to the
writer as :class:`~torchrl_ext.encodings.EncodedChunks` (chunks end at the
episode's end, as the MineStudio import cuts them). h264 packets are turned
into Annex B with FFmpeg's ``h264_mp4toannexb`` bitstream filter and a chunk
without an SPS gets the episode's parameter sets; AV1 packets (temporal units
of OBUs with their sizes, the mp4 sample format) are kept as stored and a
chunk whose first packet has no sequence header OBU gets the episode's first
one, else the stream's first (never the ``av1C`` box's copy, which an encoder
may write before its settings are final). Every chunk is decoded once
through the column's own codec before the episode is written, which checks it
and gives the last frame (the episode's final observation). Any other episode
is decoded (PyAV, ``rgb24``, as LeRobot's ``pyav`` backend converts) and
stored with the column's encoding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Self

import numpy as np

from ...encodings.key_frames import obus as av1_obus
from ...format import FormatError
from ...format.files import open_inside

__all__ = ["TOLERANCE_S", "EpisodeVideo", "StreamInfo", "match_rows", "probe_video", "read_episode_video"]

TOLERANCE_S = 1e-4  # LeRobotDataset's default tolerance_s
_FIX = "the video does not hold this episode; download the dataset again"
_SPS, _IDR, _SLICE = 7, 5, 1
_OBU_SEQUENCE_HEADER, _OBU_TEMPORAL_DELIMITER = 1, 2
_PASSTHROUGH = ("h264", "av1")


def _av() -> Any:
    try:
        import av
    except ImportError as err:
        raise ImportError(f"LeRobot videos need PyAV ({err}); pip install torchrl-ext[lerobot]") from err
    return av


@dataclass(frozen=True)
class StreamInfo:
    """The first video stream of an mp4: codec (libavcodec's canonical name: ``"h264"``, ``"av1"``), pixel format
    and frame size."""

    codec: str
    pix_fmt: str | None
    height: int
    width: int


@dataclass
class EpisodeVideo:
    """One episode of one camera: ``chunks`` (passthrough payloads, rows per chunk in ``rows``) or ``frames``
    (decoded ``uint8 [T, H, W, 3]``); ``last`` is the episode's last frame; ``reason`` says why it was decoded."""

    last: np.ndarray
    chunks: tuple[bytes, ...] | None = None
    rows: tuple[int, ...] | None = None
    frames: np.ndarray | None = None
    reason: str | None = None


class _Container:
    """An mp4 of the dataset opened with PyAV (file inside the dataset root, regular)."""

    def __init__(self, root: Path, path: Path) -> None:
        av = _av()
        self.path = path
        try:
            self.file = open_inside(root, path)
        except FileNotFoundError:
            raise FormatError(f"{path}: missing; {_FIX}") from None
        try:
            self.container = av.open(self.file, "r")
        except (av.error.FFmpegError, ValueError) as err:
            self.file.close()
            raise FormatError(f"{path}: not a readable mp4 ({err}); {_FIX}") from None
        if not self.container.streams.video:
            self.close()
            raise FormatError(f"{path}: holds no video stream; {_FIX}")
        self.stream = self.container.streams.video[0]

    def close(self) -> None:
        self.container.close()
        self.file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def probe_video(root: Path, path: Path) -> StreamInfo:
    """Codec, pixel format and size of the video in ``path``."""
    with _Container(root, path) as c:
        ctx = c.stream.codec_context
        return StreamInfo(ctx.codec.canonical_name, ctx.pix_fmt, int(ctx.height), int(ctx.width))


def match_rows(times: np.ndarray, wanted: np.ndarray) -> np.ndarray | None:
    """For each wanted time, the position of the nearest of the sorted ``times`` (None if one is off by
    ``TOLERANCE_S`` or more, as LeRobot's reader would refuse it)."""
    if not times.size:
        return None
    right = np.searchsorted(times, wanted).clip(0, times.size - 1)
    left = (right - 1).clip(0)
    pick = np.where(np.abs(times[left] - wanted) <= np.abs(times[right] - wanted), left, right)
    return pick if (np.abs(times[pick] - wanted) < TOLERANCE_S).all() else None


def _nal_units(data: bytes) -> list[tuple[int, int]]:
    """``(start code position, NAL unit type)`` of each NAL unit of an Annex B packet."""
    out, i = [], data.find(b"\x00\x00\x01")
    while i >= 0 and i + 3 < len(data):
        out.append((i - 1 if i and data[i - 1] == 0 else i, data[i + 3] & 31))
        i = data.find(b"\x00\x00\x01", i + 3)
    return out


def _has_headers(packet: bytes, codec: str) -> bool:
    """Whether the packet carries what a fresh decoder needs first (an SPS, a sequence header OBU)."""
    if codec == "h264":
        return any(kind == _SPS for _, kind in _nal_units(packet))
    return any(kind == _OBU_SEQUENCE_HEADER for *_, kind in av1_obus(packet) or ())


def _sequence_header(packet: bytes) -> bytes:
    """The packet's first sequence header OBU (empty if none)."""
    return next((packet[s:e] for s, _, e, kind in av1_obus(packet) or () if kind == _OBU_SEQUENCE_HEADER), b"")


def _headers(c: _Container, selected: list, codec: str) -> bytes:
    """What a chunk without headers gets first: the episode's first parameter sets or sequence header, else (AV1)
    the first packet's of the stream."""
    if codec == "h264":
        return _parameter_sets(selected)
    found = next((h for *_, data in selected if (h := _sequence_header(data))), b"")
    if not found:
        try:
            c.container.seek(0, stream=c.stream, backward=True, any_frame=False)
            first = next((p for p in c.container.demux(c.stream) if p.size), None)
        except _av().error.FFmpegError as err:
            raise FormatError(f"{c.path}: demuxing failed at its start ({err}); {_FIX}") from None
        found = _sequence_header(bytes(first)) if first is not None else b""
    return found


def _prepend(headers: bytes, packet: bytes, codec: str) -> bytes:
    """``headers`` before the packet's first picture (after a leading AV1 temporal delimiter, which comes first)."""
    obus = av1_obus(packet) if codec == "av1" else None
    at = obus[0][2] if obus and obus[0][3] == _OBU_TEMPORAL_DELIMITER else 0
    return packet[:at] + headers + packet[at:]


def _demux(c: _Container, start: float, stop: float, keep: str | None) -> list[tuple[Any, float, bool, bytes | None]]:
    """``(packet, shown at seconds, key frame, bytes)`` from the key frame before ``start`` until the decoding time
    passes ``stop``; bytes (``keep``: ``"h264"`` as Annex B, ``"av1"`` as stored, None for none) for passthrough."""
    av = _av()
    stream, tb = c.stream, Fraction(c.stream.time_base)
    c.container.seek(max(0, math.floor(start / tb)), stream=stream, backward=True, any_frame=False)
    bsf = av.bitstream.BitStreamFilterContext("h264_mp4toannexb", stream) if keep == "h264" else None
    out = []
    try:
        for packet in c.container.demux(stream):
            if packet.size == 0 or packet.pts is None:
                continue
            if packet.dts is not None and packet.dts * tb >= stop:
                break
            data = bytes(packet) if keep == "av1" else None
            if bsf is not None:  # the filter takes its packet over: it gets a copy
                copy = av.Packet(bytes(packet))
                copy.pts, copy.dts, copy.time_base, copy.is_keyframe = packet.pts, packet.dts, packet.time_base, \
                    packet.is_keyframe
                filtered = bsf.filter(copy)
                data = bytes(filtered[0]) if len(filtered) == 1 else None
            out.append((packet, float(packet.pts * tb), bool(packet.is_keyframe), data))
    except av.error.FFmpegError as err:
        raise FormatError(f"{c.path}: demuxing failed at {start:.3f}s ({err}); {_FIX}") from None
    return out


def _decode(c: _Container, packets: list, lo: float, hi: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """The pictures shown in ``[lo, hi)`` decoded from ``packets`` (sorted by time) and their times."""
    av = _av()
    ctx = c.stream.codec_context
    tb = Fraction(c.stream.time_base)
    times, frames = [], []
    try:
        for packet in [p for p, *_ in packets] + [None]:
            for frame in ctx.decode(packet):
                t = float(frame.pts * tb) if frame.pts is not None else None
                if t is not None and lo <= t < hi:
                    times.append(t)
                    frames.append(frame.to_ndarray(format="rgb24"))
    except av.error.FFmpegError as err:
        raise FormatError(f"{c.path}: decoding failed between {lo:.3f}s and {hi:.3f}s ({err}); {_FIX}") from None
    order = np.argsort(np.asarray(times, np.float64), kind="stable")
    return np.asarray(times, np.float64)[order], [frames[i] for i in order]


def _chunks(c: _Container, selected: list, chunk_rows: int, codec: str) -> tuple[list[list[bytes]], str | None]:
    """Packets cut before key frames into chunks of at most ``chunk_rows`` (or the reason it cannot be)."""
    if any(data is None for *_, data in selected):
        return [], "the bitstream filter did not give one packet per packet"
    if not selected[0][2]:
        return [], "the episode does not start on a key frame"
    gops: list[list[bytes]] = []
    for _, _, key, data in selected:
        if key:
            gops.append([])
        gops[-1].append(data)
    if max(len(g) for g in gops) > chunk_rows:
        return [], f"a group of pictures of {max(len(g) for g in gops)} frames, chunks hold {chunk_rows}"
    chunks: list[list[bytes]] = []
    for g in gops:
        if chunks and len(chunks[-1]) + len(g) <= chunk_rows:
            chunks[-1].extend(g)
        else:
            chunks.append(list(g))
    params = None
    for ch in chunks:  # each chunk decodes alone: it starts with the parameter sets or sequence header
        if not _has_headers(ch[0], codec):
            params = _headers(c, selected, codec) if params is None else params
            if not params:
                return [], "no sequence parameter set in the stream" if codec == "h264" else \
                    "no sequence header OBU in the stream"
            ch[0] = _prepend(params, ch[0], codec)
    return chunks, None


def _parameter_sets(selected: list) -> bytes:
    """What precedes the first slice of the first packet that carries an SPS: its parameter sets."""
    for *_, data in selected:
        units = _nal_units(data)
        if any(kind == _SPS for _, kind in units):
            return data[:next((pos for pos, kind in units if kind in (_SLICE, _IDR)), len(data))]
    return b""


def read_episode_video(root: Path, path: Path, start: float, stop: float, timestamps: np.ndarray, *,
                       codec: Any | None, chunk_rows: int, where: str) -> EpisodeVideo:
    """The frames of one episode: rows at ``start + timestamps`` of the mp4 ``path``.

    Args:
        root: the LeRobot dataset directory (``path`` must be inside it).
        path: the mp4 holding the episode.
        start, stop: the episode's ``from_timestamp`` and ``to_timestamp`` in that file.
        timestamps: the episode's ``timestamp`` column (seconds from its start).
        codec: the column's :class:`~torchrl_ext.encodings.video_codec.VideoCodec` (h264 or AV1 chunks stored as
            they are when it is the stream's codec, else decoded), or None to decode.
        chunk_rows: the column's rows per chunk (passthrough only).
        where: the episode and key, for errors.

    Raises:
        FormatError: the video lacks frames of the episode, or does not decode.
    """
    n = len(timestamps)
    wanted = start + np.asarray(timestamps, np.float64)
    with _Container(root, path) as c:
        half = 0.5 / float(c.stream.average_rate or c.stream.guessed_rate or 30)
        lo, hi = start - half, stop - half
        kind = c.stream.codec_context.codec.canonical_name
        keep = kind if kind in _PASSTHROUGH and codec is not None and codec.options.codec == kind else None
        packets = _demux(c, start, stop + half, keep)
        reason = None if keep else f"codec {kind!r} is decoded"
        if keep:
            selected = [p for p in packets if lo <= p[1] < hi]
            times = np.sort(np.asarray([p[1] for p in selected], np.float64))
            pick = match_rows(times, wanted)
            if pick is None or len(selected) != n or not np.array_equal(pick, np.arange(n)):
                reason = f"{len(selected)} pictures for {n} rows"
            else:
                chunks, reason = _chunks(c, selected, chunk_rows, keep)
                if reason is None:
                    return _checked(chunks, codec, where, path)
        times, frames = _decode(c, packets, lo, hi)
    pick = match_rows(times, wanted)
    if pick is None:
        raise FormatError(f"{path}: {where} has {n} rows from {wanted[0]:.4f}s to {wanted[-1]:.4f}s, the video "
                          f"shows {len(times)} pictures in [{lo:.4f}s, {hi:.4f}s) and not one within "
                          f"{TOLERANCE_S}s of each row (a video shorter than its episode?); {_FIX}")
    out = np.stack([frames[i] for i in pick.tolist()])
    return EpisodeVideo(last=out[-1], frames=out, reason=reason)


def _checked(chunks: list[list[bytes]], codec: Any, where: str, path: Path) -> EpisodeVideo:
    from ...encodings.video_codec import pack_packets

    payloads = tuple(pack_packets(ch) for ch in chunks)
    last = None
    for i, (payload, ch) in enumerate(zip(payloads, chunks)):
        try:
            frames = codec.decode(payload, len(ch))
        except ValueError as err:
            raise FormatError(f"{path}: {where} chunk {i} does not decode as it would be stored ({err}); "
                              f"{_FIX}") from None
        last = frames[-1]
    return EpisodeVideo(last=np.array(last), chunks=payloads, rows=tuple(len(ch) for ch in chunks))
