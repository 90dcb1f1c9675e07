"""Chunks stored as they are are decoded once at import: damage in the source stops the import before its episode."""

from __future__ import annotations

import io
import re

import av
import lmdb
import pytest
import torch
from interop.minestudio.ms_maker import (
    mp4_chunk,
    read_stamp,
    stamp,
    write_minestudio_dataset,
)

from torchrl_ext import ShardedStorage
from torchrl_ext.cli import main
from torchrl_ext.format import FormatError
from torchrl_ext.interop.minestudio import chunk_key, close_envs, import_minestudio
from torchrl_ext.interop.minestudio.video_chunks import check_decodes, mp4_to_payload

DAMAGED = "player1-1007"  # the second episode (index 1 of the one image part), 96 frames


def _part(src):
    (part,) = (src / "image").iterdir()
    return part


def _damage(src, episode_idx: int, start: int, packet: int) -> None:
    """Sets the forbidden bit of the first NAL header of video packet ``packet`` inside one mp4 chunk's payload.

    The offset comes from the mp4's own packet positions (4-byte length, then the NAL header), so it hits the
    same byte of the video payload whatever bytes the encoder produced; the container header is untouched.
    """
    close_envs()
    env = lmdb.open(str(_part(src)), map_size=1 << 30)
    key = chunk_key(episode_idx, start)
    with env.begin(write=True) as txn:
        data = bytearray(txn.get(key))
        with av.open(io.BytesIO(bytes(data))) as container:
            positions = [p.pos for p in container.demux(video=0) if p.size]
        data[positions[packet] + 4] ^= 0x80
        txn.put(key, bytes(data))
    env.close()


@pytest.fixture
def damaged(tmp_path):
    """A two-episode MineStudio directory whose second episode has a damaged packet in its second chunk."""
    src = tmp_path / "6xx"
    write_minestudio_dataset(src, lengths=(64, 96), meta=False, events=False)
    _damage(src, 1, 32, packet=5)
    return src


def _stamps(storage, rows):
    return [read_stamp(f) for f in storage.get(torch.arange(*rows))["image"].numpy()]


def test_clean_import_decodes_every_chunk_stored_as_it_is(imported):
    _, stats = imported
    assert stats.checked_chunks == stats.passthrough_chunks == 25 and stats.reencoded_chunks == 0


@pytest.mark.parametrize("packet", [1, 5, 31])
def test_damaged_packet_stops_the_import_naming_the_source_and_frames(tmp_path, packet):
    src = tmp_path / f"src{packet}"
    write_minestudio_dataset(src, lengths=(64, 96), meta=False, events=False)
    _damage(src, 1, 32, packet)
    source = re.escape(str(_part(src) / "data.mdb"))
    with pytest.raises(FormatError, match=rf"^{source} episode '{DAMAGED}' image chunk 1 \(frames 32-63\): the "
                                          rf"h264 decoder stopped at an error after \d+ of 32 frames .*"
                                          r"--no-check-decode[^\n]*$"):
        import_minestudio(src, tmp_path / "ds", progress=False)


def test_episode_before_the_damage_is_committed_and_the_import_resumes(damaged, tmp_path):
    root = tmp_path / "ds"
    with pytest.raises(FormatError, match=rf"episode '{DAMAGED}' image chunk 1 \(frames 32-63\)"):
        import_minestudio(damaged, root, progress=False)
    storage = ShardedStorage(root)
    assert (storage.num_episodes, len(storage)) == (1, 64)
    assert _stamps(storage, (0, 64)) == list(range(64))
    storage.verify()
    with pytest.raises(FormatError, match=rf"episode '{DAMAGED}' image chunk 1 \(frames 32-63\)"):
        import_minestudio(damaged, root, progress=False)  # run again: the same stop, nothing else written
    assert ShardedStorage(root).num_episodes == 1
    stats = import_minestudio(damaged, root, check_decode=False, progress=False)
    assert (stats.kept, stats.episodes, stats.checked_chunks, stats.passthrough_chunks) == (1, 1, 0, 3)


def test_unchecked_damage_is_checksummed_with_the_rest(damaged, tmp_path):
    root = tmp_path / "ds"
    import_minestudio(damaged, root, check_decode=False, progress=False)
    storage = ShardedStorage(root)
    storage.verify()  # the checksums were computed after the damage
    assert _stamps(storage, (64, 96)) == [1024 + t for t in range(32)]  # the chunk before the damage reads well
    with pytest.raises(ValueError, match="could not decode the chunk"):
        storage.get(torch.arange(96, 128))


def test_a_chunk_short_of_frames_is_refused():
    packets, _ = mp4_to_payload(mp4_chunk([stamp(0, t, 64, 64) for t in range(8)]), 8, "x")
    check_decodes(packets, 8, "x")
    with pytest.raises(FormatError, match=r"^part episode 'e' image chunk 0 \(frames 0-8\): the chunk decodes to 8 "
                                          r"frames, expected 9; the source is damaged"):
        check_decodes(packets, 9, "part episode 'e' image chunk 0 (frames 0-8)")


def test_cli_stops_at_the_damage_with_exit_status_1(damaged, tmp_path, capsys):
    assert main(["import", "minestudio", str(damaged), "--root", str(tmp_path / "ds"), "--no-progress"]) == 1
    out = capsys.readouterr()
    (line,) = out.err.splitlines()
    assert line.startswith(f"torchrl-ext import: error: {_part(damaged) / 'data.mdb'} episode "
                           f"'{DAMAGED}' image chunk 1 (frames 32-63): the h264 decoder stopped at an error")
    assert out.out == ""


def test_cli_no_check_decode_imports_the_damage(damaged, tmp_path, capsys):
    root = tmp_path / "ds"
    assert main(["import", "minestudio", str(damaged), "--root", str(root), "--no-progress",
                 "--no-check-decode"]) == 0
    assert re.match(rf"{re.escape(str(root))}: 2 episodes imported .* 5 chunks stored as they are, 0 encoded again, "
                    r"0 events, 0 chunks checked by decoding, ", capsys.readouterr().out)


def test_cli_checks_by_default(tmp_path, capsys):
    src = tmp_path / "6xx"
    write_minestudio_dataset(src, lengths=(64,), meta=False, events=False)
    assert main(["import", "minestudio", str(src), "--root", str(tmp_path / "ds"), "--no-progress"]) == 0
    assert ", 2 chunks stored as they are, 0 encoded again, 0 events, 2 chunks checked by decoding, " in (
        capsys.readouterr().out)
