"""AV1 videos of the committed fixture (lerobot 0.4.4, libsvtav1) stored as LeRobot's own chunks, or decoded."""

from __future__ import annotations

import os
from collections.abc import Callable

import av
import numpy as np
import pytest
from interop.lerobot.make_fixtures import FIXTURES, LENGTHS

from torchrl_ext import ShardedStorage
from torchrl_ext.encodings import Video, psnr
from torchrl_ext.format import FormatError
from torchrl_ext.interop.lerobot import import_lerobot

IMAGE = ("observation", "images", "top")
VIDEO = "videos/observation.images.top/chunk-000/file-000.mp4"
FIRST = np.cumsum((0, *LENGTHS[:-1]))  # the first packet of each episode in the mp4 (one packet per frame)


def _frames(root) -> np.ndarray:
    storage = ShardedStorage(root)
    return storage[np.arange(len(storage))][IMAGE].numpy()


@pytest.fixture(scope="module")
def decoded(tmp_path_factory) -> np.ndarray:
    """Every frame of the AV1 fixture as the decoding import stores it (lossless zstd)."""
    root = tmp_path_factory.mktemp("av1_zstd") / "ds"
    stats = import_lerobot(FIXTURES / "av1", root, encodings={"observation.images.top": "zstd"}, progress=False)
    assert (stats.passthrough_chunks, stats.decoded_episodes) == (0, 3)
    return _frames(root)


def _remux(path, change: Callable[[int, bytes, bool], tuple[bytes, bool]]) -> None:
    """Rewrites the mp4 (stream copy) with each packet's ``(bytes, key frame)`` replaced by ``change(i, ...)``."""
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(path)) as inp, av.open(str(tmp), "w") as out:
        stream = inp.streams.video[0]
        copy = out.add_stream_from_template(stream, opaque=True)
        packets = [p for p in inp.demux(stream) if p.size]
        for i, packet in enumerate(packets):
            data, key = change(i, bytes(packet), bool(packet.is_keyframe))
            new = av.Packet(data)
            new.pts, new.dts, new.duration, new.time_base = packet.pts, packet.dts, packet.duration, packet.time_base
            new.is_keyframe = key
            new.stream = copy
            out.mux(new)
    os.replace(tmp, path)


def _reencode(path, keys: set[int]) -> None:
    """Encodes the mp4's pictures again with libsvtav1 (random access, hidden frames), key frames only at ``keys``."""
    with av.open(str(path)) as c:
        pictures = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libsvtav1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        stream.codec_context.options = {"crf": "30", "preset": "10", "svtav1-params": "keyint=300:scd=0"}
        for i, rgb in enumerate(pictures):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            frame.pict_type = av.video.frame.PictureType.I if i in keys else av.video.frame.PictureType.NONE
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with av.open(str(tmp)) as c:
        assert [i for i, p in enumerate(c.demux(video=0)) if p.size and p.is_keyframe] == sorted(keys)
    os.replace(tmp, path)


def _without_sequence_header(data: bytes) -> bytes:
    """The packet without its leading sequence header OBU (type 1; the fixture's is 12 bytes with a 1-byte size)."""
    assert (data[0] >> 3) & 15 == 1 and data[1] < 0x80
    return data[2 + data[1]:]


def test_av1_passthrough_is_bit_exact_with_the_stream_decoded_whole(imported):
    with av.open(str(FIXTURES / "av1" / VIDEO)) as c:
        whole = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    assert whole.shape == (sum(LENGTHS), 32, 32, 3)
    np.testing.assert_array_equal(_frames(imported["av1"][0]), whole)


def test_av1_chunks_hold_whole_gops_and_get_the_sequence_header_they_lack(fixture_copy, decoded, tmp_path):
    src = fixture_copy("av1")
    _remux(src / VIDEO, lambda i, data, key: (_without_sequence_header(data) if key and i else data, key))
    stats = import_lerobot(src, tmp_path / "ds", encodings={"observation.images.top": Video(codec="av1", gop=8)},
                           progress=False)
    # key frames every 2 frames from each episode's start: 23 -> 8+8+7, 31 -> 8+8+8+7, 26 -> 8+8+8+2 frames
    assert (stats.passthrough_chunks, stats.decoded_episodes) == (11, 0)
    np.testing.assert_array_equal(_frames(tmp_path / "ds"), decoded)


def test_a_damaged_av1_packet_is_refused_naming_its_episode_and_chunk(fixture_copy, tmp_path):
    src = fixture_copy("av1")
    second = int(FIRST[1]) + 1  # episode 1's second picture: a frame OBU (type 6) alone

    def damage(i: int, data: bytes, key: bool) -> tuple[bytes, bool]:
        if i != second:
            return data, key
        assert (data[0] >> 3) & 15 == 6 and len(data) > 60
        return data[:40] + bytes(b ^ 0xFF for b in data[40:48]) + data[48:], key

    _remux(src / VIDEO, damage)
    with pytest.raises(FormatError, match=r"file-000\.mp4: episode 1 'observation\.images\.top' chunk 0 does not "
                                          r"decode as it would be stored \(libdav1d could not decode the chunk .*"
                                          r"download the dataset again") as err:
        import_lerobot(src, tmp_path / "ds", progress=False)
    assert "\n" not in str(err.value)
    assert ShardedStorage(tmp_path / "ds").num_episodes == 1  # episode 0 is committed; a rerun resumes after it


def test_an_av1_episode_not_starting_on_a_key_frame_is_decoded_with_the_reason(fixture_copy, tmp_path):
    src = fixture_copy("av1")
    _reencode(src / VIDEO, keys={0, int(FIRST[2])})  # episode 1 starts on an inter frame
    stats = import_lerobot(src, tmp_path / "ds", progress=False)
    assert (stats.passthrough_chunks, stats.decoded_episodes) == (2, 1)
    assert stats.reasons == {"the episode does not start on a key frame": 1}
    import_lerobot(src, tmp_path / "zstd", encodings={"observation.images.top": "zstd"}, progress=False)
    frames, decoded, one = _frames(tmp_path / "ds"), _frames(tmp_path / "zstd"), np.arange(FIRST[1], FIRST[2])
    np.testing.assert_array_equal(np.delete(frames, one, 0), np.delete(decoded, one, 0))  # passed through
    assert psnr(decoded[one], frames[one]) > 30  # decoded, then encoded again as the column's AV1 (35.6 dB)


def test_the_fixture_is_what_these_tests_assume():
    """libsvtav1 in mp4: key frames every 2 frames from each episode's start, each led by a sequence header OBU."""
    with av.open(str(FIXTURES / "av1" / VIDEO)) as c:
        stream = c.streams.video[0]
        packets = [(bytes(p), bool(p.is_keyframe)) for p in c.demux(stream) if p.size]
        assert stream.codec_context.codec.canonical_name == "av1"
    assert len(packets) == sum(LENGTHS)
    keys = [i for i, (_, key) in enumerate(packets) if key]
    assert keys == [int(a) + t for a, n in zip(FIRST, LENGTHS) for t in range(0, n, 2)]
    assert {(data[0] >> 3) & 15 for data, key in packets if key} == {1}
    assert {(data[0] >> 3) & 15 for data, key in packets if not key} == {6}
