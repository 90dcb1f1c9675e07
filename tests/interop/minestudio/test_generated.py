"""MineGenerator episodes (info/action pickles with tensors, mp4 or JPEG frames) imported, with counter events."""

from __future__ import annotations

import os
import pickle
import uuid

import av
import pytest
import torch
from helpers import read_events
from PIL import Image
from interop.minestudio.ms_maker import read_stamp, stamp

from torchrl_ext import ShardedStorage
from torchrl_ext.format import FormatError
from torchrl_ext.interop.minestudio import import_generated_episodes
from torchrl_ext.sources.safe_pickle import UnsafePickleError

H, W = 64, 64


def infos_of(e, n):
    return [{"health": 20.0 - t / 10, "isGuiOpen": t % 5 == 0, "player_pos": {"x": 1.0},
             "mine_block": {"dirt": t // 7, "stone": 2 * (t // 11)}, "craft_item": {}} for t in range(n + 1)]


def write_generated(tmp, lengths, media=("h264",)):
    """Mirrors ``Worker.save_to_file`` of MineStudio 1.1.6; returns the ids in write order."""
    ids = []
    for e, n in enumerate(lengths):
        eid = str(uuid.UUID(int=1000 + e))
        frames = [stamp(e, t, H, W) for t in range(n + 1)]
        with open(tmp / f"info_{eid}.pkl", "wb") as f:
            pickle.dump(infos_of(e, n), f)
        with open(tmp / f"action_{eid}.pkl", "wb") as f:
            pickle.dump([{"buttons": torch.tensor([t % 3]), "camera": torch.tensor([60 + e])} for t in range(n)], f)
        if media[e % len(media)] == "h264":
            with av.open(str(tmp / f"video_{eid}.mp4"), mode="w", format="mp4") as c:
                s = c.add_stream("h264", rate=30)
                s.width, s.height = W, H
                for img in frames:
                    for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                        c.mux(p)
                for p in s.encode():
                    c.mux(p)
        else:
            os.makedirs(tmp / f"images_{eid}")
            for i, img in enumerate(frames):
                Image.fromarray(img).save(tmp / f"images_{eid}" / f"{i}.jpeg", quality=95)
        ids.append(eid)
    return ids


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    src = tmp_path_factory.mktemp("gen")
    ids = write_generated(src, (40, 70), media=("h264", "jpeg"))
    root = tmp_path_factory.mktemp("out") / "ds"
    return src, ids, root, import_generated_episodes(src, root, progress=False)


def test_frames_actions_and_next_image(generated):
    src, ids, root, stats = generated
    assert (stats.episodes, stats.steps) == (2, 110)
    st = ShardedStorage(root)
    first, length = st.episode_bounds
    table = st.episode_table()
    for e in range(2):
        meta = table.metadata(e)
        k = ids.index(meta["name"])
        td = st.get(torch.arange(int(first[e]), int(first[e] + length[e])))
        assert [read_stamp(f) for f in td["image"].numpy()] == [k * 1024 + t for t in range(length[e])]
        assert read_stamp(td["next", "image"][-1].numpy()) == k * 1024 + int(length[e])
        assert td["action", "buttons"][:, 0].tolist() == [t % 3 for t in range(length[e])]
        assert td["info", "health"].tolist() == pytest.approx([20.0 - t / 10 for t in range(length[e])])
        assert meta["media"] == ("h264", "jpeg")[k]


def test_counter_events(generated):
    src, ids, root, _ = generated
    st = ShardedStorage(root)
    table = st.episode_table()
    got = sorted((table.metadata(ep)["name"], step, name, v) for ep, step, _, name, v in read_events(root))
    want = []
    for k, n in enumerate((40, 70)):
        infos = infos_of(k, n)
        for t in range(n):
            for item in ("dirt", "stone"):
                d = infos[t + 1]["mine_block"][item] - infos[t]["mine_block"][item]
                if d > 0:
                    want.append((ids[k], t, f"mine_block:{item}", float(d)))
    assert got == sorted(want)


def test_resume_skips_committed_episodes(generated, tmp_path):
    src, ids, _, _ = generated
    root = tmp_path / "ds"
    import_generated_episodes(src, root, progress=False)
    stats = import_generated_episodes(src, root, progress=False)
    assert (stats.kept, stats.episodes) == (2, 0)


def test_count_mismatch_is_a_format_error(tmp_path):
    (eid,) = write_generated(tmp_path, (10,))
    with open(tmp_path / f"info_{eid}.pkl", "wb") as f:
        pickle.dump(infos_of(0, 8), f)
    with pytest.raises(FormatError, match=r"10 actions need 11 infos and frames, found 9 infos and 11 frames"):
        import_generated_episodes(tmp_path, tmp_path / "ds", progress=False)


def test_malicious_info_pickle_is_refused(tmp_path):
    (eid,) = write_generated(tmp_path, (4,))
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(tmp_path / f"info_{eid}.pkl", "wb") as f:
        pickle.dump([Evil()], f)
    with pytest.raises(UnsafePickleError, match=r"info_.*\.pkl: the pickle asks for posix.system"):
        import_generated_episodes(tmp_path, tmp_path / "ds", progress=False)
    assert not marker.exists()
