"""Part of a chunk with B-frames: only the packets the frames need are decoded, and the frames equal a full decode."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

av = pytest.importorskip("av")

from torchrl_ext.encodings import Video
from torchrl_ext.encodings.h264_order import (
    GopOrder,
    gop_order,
    has_non_reference,
    nal_units,
)
from torchrl_ext.encodings.video_codec import VideoCodec, pack_packets

SHAPE = (48, 64, 3)


def _b_frame_chunk(n: int, keyint: int) -> list[bytes]:
    """``n`` moving frames coded as x264 codes MineStudio's chunks: B-frames, B-pyramid, key frames every ``keyint``."""
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = SHAPE[1], SHAPE[0], "yuv420p"
    ctx.time_base, ctx.framerate = Fraction(1, 20), Fraction(20, 1)
    ctx.options = {"preset": "medium", "crf": "23",
                   "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=3:b-pyramid=normal"}
    rng = np.random.default_rng(0)
    world = rng.integers(0, 255, (SHAPE[0], 4 * SHAPE[1], 3), dtype=np.uint8)
    packets = []
    for t in range(n):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(world[:, 3 * t : 3 * t + SHAPE[1]]), format="rgb24")
        frame.pts = t
        packets += [bytes(p) for p in ctx.encode(frame.reformat(format="yuv420p"))]
    packets += [bytes(p) for p in ctx.encode(None)]
    return packets


def _decoder_display(packets: list[bytes]) -> tuple[int, ...]:
    """Display position of each packet as the decoder orders them (pts = packet index)."""
    ctx = av.CodecContext.create("h264", "r")
    order = []
    for i, data in enumerate([*packets, None]):
        pkt = None if data is None else av.Packet(data)
        if pkt is not None:
            pkt.pts = i
        order += [f.pts for f in ctx.decode(pkt)]
    display = [0] * len(packets)
    for position, i in enumerate(order):
        display[i] = position
    return tuple(display)


def _without_parameter_sets(packets: list[bytes]) -> list[bytes]:
    """The packets after the first without their SPS and PPS NAL units (types 7 and 8)."""
    rest = [b"".join(b"\x00\x00\x00\x01" + u for u in nal_units(p) if u[0] & 31 not in (7, 8)) for p in packets[1:]]
    return [packets[0], *rest]


@pytest.fixture(scope="module", params=[(32, False), (20, False), (20, True)],
                ids=["one IDR", "IDR inside the chunk", "IDR inside the chunk without parameter sets"])
def chunk(request):
    keyint, bare = request.param
    packets = _b_frame_chunk(32, keyint)
    return _without_parameter_sets(packets) if bare else packets


def test_gop_order_is_the_decoders(chunk):
    order = gop_order(chunk)
    assert order is not None
    assert order.display == _decoder_display(chunk)
    assert order.display != tuple(range(32))  # B-frames: decoding order is not display order
    assert has_non_reference(chunk) and not all(order.reference)


@pytest.mark.slow
def test_every_part_equals_the_full_decode(chunk):
    codec = VideoCodec(Video(), np.dtype(np.uint8), SHAPE)
    payload = pack_packets(chunk)
    full = codec.decode(payload, 32)
    for first in range(32):
        for stop in range(first + 1, 33):
            out = np.empty((stop - first, *SHAPE), np.uint8)
            np.testing.assert_array_equal(codec.decode(payload, 32, None, out, first), full[first:stop],
                                          err_msg=f"frames [{first}, {stop})")
    np.testing.assert_array_equal(codec.decode(payload, 32, stop=7), full[:7])


def test_needed_leaves_out_non_reference_pictures_outside_the_range():
    #          decoding order:  I0 P2 b1 P6 B4 b3 b5 P8 b7
    order = GopOrder(display=(0, 2, 1, 6, 4, 3, 5, 8, 7),
                     reference=(True, True, False, True, True, False, False, True, False))
    assert order.needed(4, 6) == [0, 1, 3, 4, 6]  # b1 and b3 skipped; nothing after b5
    assert order.needed(0, 1) == [0]
    assert order.needed(7, 9) == [0, 1, 3, 4, 7, 8]
    assert order.needed(9, 10) == []


def test_headers_not_understood_give_none(chunk):
    assert gop_order([b"\x00\x00\x01\x09\xf0", *chunk[1:]]) is None  # no picture in the first packet
    assert gop_order(chunk[1:]) is None  # no IDR picture first
    assert gop_order([b"not h264"]) is None
    assert gop_order([]) is None


def test_a_disagreeing_decoder_order_falls_back_to_decoding_everything(chunk, monkeypatch):
    from torchrl_ext.encodings import video_codec

    codec = VideoCodec(Video(), np.dtype(np.uint8), SHAPE)
    payload = pack_packets(chunk)
    full = codec.decode(payload, 32)
    true = gop_order(chunk)
    swapped = list(true.display)
    a, b = swapped.index(1), swapped.index(2)  # two pictures output in the wrong order
    swapped[a], swapped[b] = swapped[b], swapped[a]
    monkeypatch.setattr(video_codec, "gop_order", lambda packets: GopOrder(tuple(swapped), true.reference))
    out = np.empty((30, *SHAPE), np.uint8)
    np.testing.assert_array_equal(codec.decode(payload, 32, None, out, 1), full[1:31])


def test_parts_take_the_partial_path(chunk, monkeypatch):
    codec = VideoCodec(Video(), np.dtype(np.uint8), SHAPE)
    payload = pack_packets(chunk)
    full = codec.decode(payload, 32)

    def decode_all(*args):
        raise AssertionError("decoded every packet")

    monkeypatch.setattr(VideoCodec, "_decode_all", decode_all)
    out = np.empty((9, *SHAPE), np.uint8)
    np.testing.assert_array_equal(codec.decode(payload, 32, None, out, 20), full[20:29])


@pytest.mark.parametrize("bare", [False, True], ids=["parameter sets at the IDR", "parameter sets only first"])
def test_a_part_after_an_idr_picture_sends_no_packet_before_it(bare, monkeypatch):
    from torchrl_ext.encodings import video_codec

    packets = _b_frame_chunk(32, 20)
    assert [7 in {u[0] & 31 for u in nal_units(p)} for p in packets] == [i in (0, 20) for i in range(32)]
    packets = _without_parameter_sets(packets) if bare else packets
    codec = VideoCodec(Video(), np.dtype(np.uint8), SHAPE)
    full = codec.decode(pack_packets(packets), 32)
    order = gop_order(packets)
    assert order.display[20] == 20 and order.reference[20]  # the second IDR picture
    damaged = [packets[0], *(b"\xff" * len(p) for p in packets[1:20]), *packets[20:]]
    monkeypatch.setattr(video_codec, "gop_order", lambda _: order)  # as the intact packets' headers give it
    with pytest.raises(ValueError, match="could not decode the chunk"):
        codec.decode(pack_packets(damaged), 32, None, np.empty((1, *SHAPE), np.uint8), 19)

    def decode_all(*args):
        raise AssertionError("decoded every packet")

    monkeypatch.setattr(VideoCodec, "_decode_all", decode_all)
    out = np.empty((9, *SHAPE), np.uint8)
    np.testing.assert_array_equal(codec.decode(pack_packets(damaged), 32, None, out, 21), full[21:30])
