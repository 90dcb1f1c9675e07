"""MineStudio datasets imported: frames (passthrough and re-encoded), actions, meta_info, events, damage, resume."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import subprocess
import sys

import av
import lmdb
import numpy as np
import pytest
import torch
from helpers import read_events
from interop.minestudio.ms_maker import (
    KILLED_IMPORT,
    actions_of,
    events_of,
    meta_of,
    read_stamp,
    write_minestudio_dataset,
)

from torchrl_ext import ShardedStorage
from torchrl_ext.format import FormatError
from torchrl_ext.interop.minestudio import close_envs, import_minestudio, separate_roots
from torchrl_ext.sources.safe_pickle import UnsafePickleError


def minestudio_frames(ms_dir, name):
    """The frames MineStudio's ImageKernelCallback decodes for an episode (PyAV, rgb24), straight from its LMDB."""
    for part in sorted((ms_dir / "image").iterdir()):
        env = lmdb.open(str(part), readonly=True, lock=False)
        with env.begin() as txn:
            infos = pickle.loads(txn.get(b"__chunk_infos__"))
            for info in infos:
                if info["episode"] == name:
                    out = []
                    for s in range(0, info["num_frames"], 32):
                        data = txn.get(str((info["episode_idx"], s)).encode())
                        with av.open(io.BytesIO(data)) as c:
                            out += [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
                    env.close()
                    return np.stack(out)
        env.close()
    raise KeyError(name)


def episode_rows(storage, e):
    first, length = storage.episode_bounds
    return torch.arange(int(first[e]), int(first[e] + length[e]))


def by_name(storage):
    table = storage.episode_table()
    return {table.metadata(e)["name"]: e for e in range(storage.num_episodes)}


def test_frames_pass_through_bit_exact(ms_dataset, imported):
    ms_dir, episodes = ms_dataset
    root, stats = imported
    assert (stats.passthrough_chunks, stats.reencoded_chunks) == (sum(n for *_, n in episodes) // 32, 0)
    st = ShardedStorage(root)
    ids = by_name(st)
    for name, e, n in episodes:
        frames = st.get(episode_rows(st, ids[name]))["image"].numpy()
        assert [read_stamp(f) for f in frames] == [e * 1024 + t for t in range(n)]
        assert np.array_equal(frames, minestudio_frames(ms_dir, name))


def test_episode_order_and_metadata(ms_dataset, imported):
    ms_dir, episodes = ms_dataset
    st = ShardedStorage(imported[0])
    table = st.episode_table()
    meta = [table.row(e) for e in range(st.num_episodes)]
    assert [m["name"] for m in meta] == sorted(n for n, _, _ in episodes)
    assert meta[2] | {"dataset_dir": None} == {"episode": 2, "first_row": 480, "length": 320, "has_final": 0,
                                               "name": "player2-1014", "dataset_dir": None, "part": "part-3",
                                               "episode_idx": 0}
    assert st.manifest.source["format"] == "minestudio"


def test_actions_as_minestudio_stores_them(ms_dataset, imported):
    st = ShardedStorage(imported[0])
    ids = by_name(st)
    for name, e, n in ms_dataset[1]:
        got = st.get(episode_rows(st, ids[name]))["action"]
        want = actions_of(e, n)
        assert sorted(got.keys()) == sorted(want)
        for k, v in want.items():
            assert got[k].numpy().dtype == v.dtype and np.array_equal(got[k].numpy(), v), k


def test_numeric_meta_info_fields(ms_dataset, imported):
    st = ShardedStorage(imported[0])
    name, e, n = ms_dataset[1][1]
    got = st.get(episode_rows(st, by_name(st)[name]))["meta_info"]
    assert sorted(got.keys()) == ["isGuiOpen", "pitch", "tick", "yaw"]
    records = [meta_of(e, t) for t in range(n)]
    for field in ("pitch", "yaw", "isGuiOpen", "tick"):
        assert got[field].numpy().tolist() == [r[field] for r in records]


def test_events_with_minestudio_names(ms_dataset, imported):
    root, stats = imported
    st = ShardedStorage(root)
    ids = by_name(st)
    want = sorted((ids[name], t, ev, v) for name, e, n in ms_dataset[1] for t in range(n)
                  for ev, v in events_of(e, t).items())
    got = sorted((ep, step, name, value) for ep, step, _, name, value in read_events(root))
    assert got == want and stats.events == len(want)
    assert (root / "events" / "index").is_dir()


def test_reencoded_when_asked(ms_dataset, tmp_path):
    stats = import_minestudio(ms_dataset[0], tmp_path / "ds", passthrough=False, crf=10, progress=False)
    assert stats.passthrough_chunks == 0 and stats.reencoded_chunks == 25
    st = ShardedStorage(tmp_path / "ds")
    frames = st.get(torch.arange(len(st)))["image"].numpy()
    names = sorted(ms_dataset[1])
    assert [read_stamp(f) for f in frames] == [e * 1024 + t for _, e, n in names for t in range(n)]


def test_other_codecs_are_reencoded_once(tmp_path):
    src = tmp_path / "mpeg4"
    write_minestudio_dataset(src, lengths=(64,), codec="mpeg4", meta=False, events=False)
    stats = import_minestudio(src, tmp_path / "ds", progress=False)
    assert (stats.passthrough_chunks, stats.reencoded_chunks) == (0, 2)
    assert stats.reasons == {"codec 'mpeg4', not h264": 2}
    frames = ShardedStorage(tmp_path / "ds").get(torch.arange(64))["image"].numpy()
    assert [read_stamp(f) for f in frames] == list(range(64))


def _put(ms_dir, modality, part, key, value):
    close_envs()
    env = lmdb.open(str(ms_dir / modality / part), map_size=1 << 30)
    with env.begin(write=True) as txn:
        txn.put(key, value)
    env.close()


def test_malicious_pickle_is_refused_unrun(tmp_path):
    src = tmp_path / "ms"
    write_minestudio_dataset(src, lengths=(64,), meta=False, events=False)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    _put(src, "action", "part-1", b"(0, 32)", pickle.dumps(Evil()))
    with pytest.raises(UnsafePickleError, match=r"action chunk 1: the pickle asks for posix.system"):
        import_minestudio(src, tmp_path / "ds", progress=False)
    assert not marker.exists()


def test_corrupt_mp4_is_a_format_error(tmp_path):
    src = tmp_path / "ms"
    write_minestudio_dataset(src, lengths=(64,), meta=False, events=False)
    _put(src, "image", "part-1", b"(0, 32)", b"\x00\x00\x00\x18ftypmp42" + b"\x17" * 500)
    with pytest.raises(FormatError, match=r"episode 'player0-1000' image chunk 1: not a readable mp4"):
        import_minestudio(src, tmp_path / "ds", progress=False)


def test_missing_chunk_is_a_format_error(tmp_path):
    src = tmp_path / "ms"
    write_minestudio_dataset(src, lengths=(64,), meta=False, events=False)
    close_envs()
    env = lmdb.open(str(src / "action" / "part-1"), map_size=1 << 30)
    with env.begin(write=True) as txn:
        txn.delete(b"(0, 32)")
    env.close()
    with pytest.raises(FormatError, match=r"key '\(0, 32\)' is missing; the part is incomplete"):
        import_minestudio(src, tmp_path / "ds", progress=False)


def test_root_holding_another_import_is_refused(ms_dataset, imported, tmp_path):
    other = tmp_path / "other"
    write_minestudio_dataset(other, lengths=(32,), meta=False, events=False)
    with pytest.raises(ValueError, match=r"holds another dataset"):
        import_minestudio(other, imported[0], progress=False)


def test_several_directories_into_one_root_in_order(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_minestudio_dataset(a, lengths=(32, 64), names=["z-1", "y-1"], events=False)
    write_minestudio_dataset(b, lengths=(96,), names=["a-1"], events=False)
    import_minestudio([a, b], tmp_path / "ds", progress=False)
    table = ShardedStorage(tmp_path / "ds").episode_table()
    assert [table.metadata(e)["name"] for e in range(3)] == ["y-1", "z-1", "a-1"]


def test_separate_roots_are_named_after_the_directories(tmp_path):
    assert separate_roots([tmp_path / "x" / "6xx", tmp_path / "y" / "6xx", "7xx"], tmp_path / "out") == [
        tmp_path / "out" / "6xx", tmp_path / "out" / "6xx-2", tmp_path / "out" / "7xx"]


def test_shard_rows_must_be_a_multiple_of_the_chunk_size(ms_dataset, tmp_path):
    with pytest.raises(ValueError, match=r"`shard_rows` must be a positive multiple of the chunk size 32, got 100"):
        import_minestudio(ms_dataset[0], tmp_path / "ds", shard_rows=100, progress=False)




@pytest.mark.parametrize("kill_at, min_kept", [  # first write; in episode 0; in 1 (a subprocess each)
    (1, 0), pytest.param(70, 0, marks=pytest.mark.slow), pytest.param(140, 1, marks=pytest.mark.slow)])
def test_killed_import_resumes_to_the_same_dataset(ms_dataset, imported, tmp_path, kill_at, min_kept):
    ms_dir, ref = ms_dataset[0], imported[0]
    root = tmp_path / "ds"
    proc = subprocess.run([sys.executable, "-c", KILLED_IMPORT, str(ms_dir), str(root), str(kill_at)], capture_output=True)
    assert proc.returncode == 17, proc.stderr.decode()[-2000:]
    kept = ShardedStorage(root).num_episodes if (root / "dataset.json").exists() else 0
    stats = import_minestudio(ms_dir, root, progress=False)
    assert min_kept <= stats.kept == kept < 3 and stats.kept + stats.episodes == 3
    a, b = ShardedStorage(ref), ShardedStorage(root)
    assert len(a) == len(b) == 800
    assert (a[:] == b[:]).all()  # frames byte-identical: nothing re-encoded on resume
    assert sorted(read_events(ref)) == sorted(read_events(root))
    ta, tb = a.episode_table(), b.episode_table()
    assert [ta.metadata(e) for e in range(3)] == [tb.metadata(e) for e in range(3)]
    b.verify()


def test_episode_missing_in_a_modality_is_left_out_with_its_events(tmp_path):
    src = tmp_path / "ms"
    write_minestudio_dataset(src, lengths=(64, 160), episodes_per_part=1)
    shutil.rmtree(src / "action" / "part-2")
    stats = import_minestudio(src, tmp_path / "ds", progress=False)
    assert (stats.episodes, stats.left_out) == (1, 1)
    assert stats.dropped_events == sum(len(events_of(1, t)) for t in range(160))
    assert ShardedStorage(tmp_path / "ds").episode_table().metadata(0)["name"] == "player0-1000"
