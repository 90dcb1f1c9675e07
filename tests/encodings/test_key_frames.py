"""Chunks of several groups of pictures (LeRobot's: a key frame every 2 frames) decoded from the nearest key frame."""

from __future__ import annotations

import numpy as np
import pytest

av = pytest.importorskip("av")

from interop.lerobot.make_fixtures import FIXTURES

from torchrl_ext.encodings import Video
from torchrl_ext.encodings.h264_order import nal_units
from torchrl_ext.encodings.key_frames import key_start
from torchrl_ext.encodings.video_codec import VideoCodec, pack_packets

N = 32
SHAPE = (32, 32, 3)
VIDEO = "videos/observation.images.top/chunk-000/file-000.mp4"
CODECS = ("h264", "av1")


def _lerobot_packets(codec: str) -> tuple[list[bytes], list[bool]]:
    """The first ``N`` packets of the committed LeRobot fixture (written by lerobot 0.4.4) and their key flags."""
    with av.open(str(FIXTURES / codec / VIDEO)) as c:
        stream = c.streams.video[0]
        bsf = av.bitstream.BitStreamFilterContext("h264_mp4toannexb", stream) if codec == "h264" else None
        packets, keys = [], []
        for packet in c.demux(stream):
            if not packet.size or len(packets) == N:
                continue
            keys.append(bool(packet.is_keyframe))
            if bsf is None:
                packets.append(bytes(packet))
                continue
            copy = av.Packet(bytes(packet))
            copy.pts, copy.dts, copy.time_base = packet.pts, packet.dts, packet.time_base
            (filtered,) = bsf.filter(copy)
            packets.append(bytes(filtered))
    return packets, keys


def _without_headers(codec: str, packet: bytes) -> bytes:
    """The packet without its SPS and PPS NAL units (h264) or its sequence header OBU (AV1, a leading one)."""
    if codec == "h264":
        return b"".join(b"\x00\x00\x00\x01" + nal for nal in nal_units(packet) if nal[0] & 31 not in (7, 8))
    assert (packet[0] >> 3) & 15 == 1 and packet[1] < 0x80  # a sequence header OBU with a 1-byte size
    return packet[2 + packet[1]:]


@pytest.fixture(scope="module", params=CODECS)
def lerobot(request):
    packets, keys = _lerobot_packets(request.param)
    codec = VideoCodec(Video(codec=request.param), np.dtype(np.uint8), SHAPE)
    return request.param, packets, keys, codec, codec.decode(pack_packets(packets), N)


def _decode(codec: VideoCodec, packets: list[bytes], first: int, stop: int) -> np.ndarray:
    out = np.empty((stop - first, *SHAPE), np.uint8)
    return codec.decode(pack_packets(packets), N, None, out, first)


def test_key_packets_are_the_containers_key_frames(lerobot):
    name, packets, keys, _, _ = lerobot
    assert [k for k in range(N) if keys[k]] == [*range(0, 23, 2), *range(23, N, 2)]  # every 2, episodes at 0, 23
    for first in range(N):
        last_key = max(k for k in range(first + 1) if keys[k])
        assert key_start(name, packets, first) == (None if last_key == 0 else (last_key, packets[last_key]))


@pytest.mark.parametrize("first", range(N))
def test_every_part_equals_the_full_decode(lerobot, first):
    _, packets, _, codec, full = lerobot
    for stop in range(first + 1, N + 1):
        np.testing.assert_array_equal(_decode(codec, packets, first, stop), full[first:stop],
                                      err_msg=f"frames [{first}, {stop})")


def test_packets_before_the_key_packet_are_not_decoded(lerobot):
    _, packets, _, codec, full = lerobot
    damaged = [packets[0], b"\xff" * len(packets[1]), *packets[2:]]
    np.testing.assert_array_equal(_decode(codec, damaged, 2, N), full[2:])
    np.testing.assert_array_equal(_decode(codec, damaged, 21, 22), full[21:22])
    with pytest.raises(ValueError, match="could not decode the chunk"):
        _decode(codec, damaged, 1, 2)


@pytest.mark.parametrize("first", [3, 4, 30])
def test_a_damaged_packet_after_the_key_packet_is_a_value_error(lerobot, first):
    _, packets, _, codec, _ = lerobot
    damaged = [*packets[:first], b"\xff" * len(packets[first]), *packets[first + 1:]]
    with pytest.raises(ValueError, match="could not decode the chunk"):
        _decode(codec, damaged, first, N)


def test_key_packet_without_headers_gets_the_first_packets(lerobot):
    name, packets, keys, codec, full = lerobot
    stripped = [packets[0], *(_without_headers(name, p) if key else p for p, key in zip(packets[1:], keys[1:]))]
    assert [len(s) < len(p) for s, p in zip(stripped, packets)] == [False, *keys[1:]]
    k, packet = key_start(name, stripped, 7)
    assert k == 6 and packet != stripped[6]  # the same parameter sets or sequence header as before they were cut
    assert nal_units(packet) == nal_units(packets[6]) if name == "h264" else packet == packets[6]
    for first in range(N):
        np.testing.assert_array_equal(_decode(codec, stripped, first, N), full[first:], err_msg=f"first {first}")
        np.testing.assert_array_equal(_decode(codec, stripped, first, first + 1), full[first:first + 1])


def test_no_key_start_for_what_is_not_understood(lerobot):
    name, packets, keys, _, _ = lerobot
    assert key_start(name, packets, 0) is None  # the chunk's start
    assert key_start("vp9", packets, 7) is None
    garbage = [packets[0], *(b"\xff" * len(p) for p in packets[1:])]
    assert key_start(name, garbage, 31) is None
    if name == "h264":  # no parameter sets anywhere for a key packet that lacks them
        bare = [_without_headers(name, p) for p in packets]
        assert key_start(name, bare, 7) is None
    else:  # a reduced still picture header: frame headers do not start with show_existing_frame
        reduced = bytearray(packets[0])
        reduced[2] |= 0x08
        assert key_start(name, [bytes(reduced), *packets[1:]], 7) == (6, packets[6])  # packet 6 has its own
        own = [bytes(reduced), *(_without_headers(name, p) if key else p for p, key in zip(packets[1:], keys[1:]))]
        assert key_start(name, own, 7) is None


def test_h264_parameter_sets_go_after_an_access_unit_delimiter():
    packets, keys = _lerobot_packets("h264")
    codec = VideoCodec(Video(), np.dtype(np.uint8), SHAPE)
    full = codec.decode(pack_packets(packets), N)
    delimited = [b"\x00\x00\x00\x01\x09\xf0" + (_without_headers("h264", p) if key and i else p)
                 for i, (p, key) in enumerate(zip(packets, keys))]
    k, packet = key_start("h264", delimited, 9)
    assert k == 8 and [nal[0] & 31 for nal in nal_units(packet)] == [9, 7, 8, 5]
    for first in range(N):
        np.testing.assert_array_equal(_decode(codec, delimited, first, N), full[first:], err_msg=f"first {first}")
