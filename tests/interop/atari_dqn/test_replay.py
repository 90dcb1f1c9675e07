"""AtariDQNExperienceReplay over generated replay logs: keys, dtypes, values, frame stacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from interop.atari_dqn.replay_logs_maker import make_replay_logs

from torchrl_ext import ShardedStorage
from torchrl_ext.datasets import FrameStackStorage
from torchrl_ext.interop.atari_dqn import AtariDQNExperienceReplay


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    base = tmp_path_factory.mktemp("logs")
    rec = make_replay_logs(base / "Pong" / "2", capacity=250, num_episodes=14, mean_len=45, seed=3)
    return base, rec


@pytest.fixture(scope="module")
def root(logs, tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    AtariDQNExperienceReplay("Pong/2", 4, root=root, local_dir=logs[0])
    return root


def _reference(root):
    return ShardedStorage(root / "Pong" / "2")


def test_sample_keys_dtypes_shapes(root, logs):
    rb = AtariDQNExperienceReplay("Pong/2", 32, root=root, download=False)
    torch.manual_seed(0)
    s = rb.sample()
    assert s["observation"].shape == (32, 84, 84) and s["observation"].dtype == torch.uint8
    assert s["next", "observation"].shape == (32, 84, 84)
    assert s["action"].dtype == torch.int32 and s["action"].shape == (32,)
    assert s["next", "reward"].dtype == torch.float32 and s["next", "reward"].shape == (32, 1)
    for key in ("done", "terminated", "truncated", ("next", "done"), ("next", "terminated"), ("next", "truncated")):
        assert s[key].dtype == torch.bool and s[key].shape == (32, 1)
    assert not s["done"].any()


def test_sampled_values_match_writer_record(root, logs):
    _, rec = logs
    rb = AtariDQNExperienceReplay("Pong/2", 64, root=root, download=False)
    torch.manual_seed(1)
    s = rb.sample()
    first = {e: g for g, e in zip(range(len(rec.episode)), rec.episode) if e >= 0 and rec.step[g] == 0}
    meta = _reference(root).episode_table()
    for i in range(64):
        ep, step = int(s["episode"][i]), int(s["step"][i])
        g = int(meta.metadata(ep)["first_index"]) + step
        np.testing.assert_array_equal(s["observation"][i].numpy(), rec.obs[g])
        assert int(s["action"][i]) == rec.action[g]
        assert float(s["next", "reward"][i, 0]) == rec.reward[g]
        assert bool(s["next", "terminated"][i, 0]) == bool(rec.terminal[g])
        assert rec.episode[g] >= 0 and g >= first[rec.episode[g]]


@pytest.mark.parametrize("pad", ["zeros", "first"])
def test_frame_stack_stays_inside_episode(root, pad):
    rb = AtariDQNExperienceReplay("Pong/2", 128, root=root, download=False, stack=4, stack_pad=pad,
                                  num_slices=2)
    plain = _reference(root)
    first, _ = plain.episode_bounds
    torch.manual_seed(2)
    s = rb.sample()
    rows = s["index"].reshape(-1).numpy()
    assert s["observation"].shape == (128, 4, 84, 84)
    for i, r in enumerate(rows):
        f = first[np.searchsorted(first, r, side="right") - 1]
        for j in range(4):
            src = r - 3 + j
            if src >= f:
                want = plain.get(int(src))["observation"].numpy()
            else:
                want = np.zeros((84, 84), np.uint8) if pad == "zeros" else plain.get(int(f))["observation"].numpy()
            np.testing.assert_array_equal(s["observation"][i, j].numpy(), want)
        np.testing.assert_array_equal(s["next", "observation"][i, :3].numpy(), s["observation"][i, 1:].numpy())
        np.testing.assert_array_equal(s["next", "observation"][i, 3].numpy(),
                                      plain.get(int(r))["next", "observation"].numpy())


def test_terminal_next_observation_is_zeros(root):
    plain = _reference(root)
    rb = AtariDQNExperienceReplay("Pong/2", 8, root=root, download=False, stack=4)
    first, length = plain.episode_bounds
    last = torch.as_tensor(first + length - 1)
    td = rb.storage.get(last)
    assert not td["next", "observation"][:, 3].any()
    np.testing.assert_array_equal(td["next", "observation"][:, :3].numpy(), td["observation"][:, 1:].numpy())


@pytest.mark.parametrize("replacement", [True, False])
def test_slices_never_cross_episodes(root, replacement):
    rb = AtariDQNExperienceReplay("Pong/2", 64, root=root, download=False, slice_len=16,
                                  replacement=replacement)
    torch.manual_seed(3)
    s = rb.sample()
    s = s.reshape(-1, 16)  # without replacement, slices of episodes shorter than 16 are dropped
    assert s.shape[0] >= 1
    assert (s["episode"] == s["episode"][:, :1]).all()
    assert (s["step"][:, 1:] - s["step"][:, :-1] == 1).all()


def test_missing_dataset_without_download_says_how(tmp_path):
    with pytest.raises(FileNotFoundError, match="pass download=True, or local_dir="):
        AtariDQNExperienceReplay("Pong/1", root=tmp_path, download=False)


@pytest.mark.parametrize("bad", ["Pong", "Pong/6", "Tetris/1", 3])
def test_bad_dataset_id(tmp_path, bad):
    with pytest.raises(ValueError, match="`dataset_id` must be '<game>/<run>'"):
        AtariDQNExperienceReplay(bad, root=tmp_path, download=False)


def test_available_datasets_lists_games_and_runs():
    ids = AtariDQNExperienceReplay.available_datasets
    assert len(ids) == 50 * 5 and "Pong/5" in ids and "AirRaid/1" in ids


def test_download_from_bucket_converts_and_samples(gcs_server, tmp_path):
    from gcs_server import upload_tree

    rec = make_replay_logs(tmp_path / "logs", capacity=120, num_episodes=8, mean_len=30, obs_shape=(84, 84), seed=5)
    upload_tree(gcs_server.client, gcs_server.bucket, "dqn/Breakout/3/", tmp_path / "logs")
    rb = AtariDQNExperienceReplay("Breakout/3", 16, root=tmp_path / "root", bucket=gcs_server.bucket,
                                  checkpoints=[0, 1])
    expected = rec.expected_episodes([0, 1])
    storage = ShardedStorage(rb.dataset_path)
    assert len(storage) == sum(len(e["action"]) for e in expected)
    got = storage.get(np.arange(len(storage)))["observation"].numpy()
    np.testing.assert_array_equal(got, np.concatenate([e["obs"] for e in expected]))
    assert not (tmp_path / "root" / ".downloads" / "Breakout" / "3").exists()


def test_cli_download_from_local_dir(logs, tmp_path, capsys):
    from torchrl_ext.cli import main

    base, rec = logs
    code = main(["download", "atari-dqn", "Pong/2", "--root", str(tmp_path), "--local-dir", str(base),
                 "--checkpoints", "0-1"])
    assert code == 0
    out = capsys.readouterr().out.strip()
    assert out == str(tmp_path / "Pong" / "2")
    assert len(ShardedStorage(out)) == sum(len(e["action"]) for e in rec.expected_episodes([0, 1]))


def test_cli_rejects_bad_checkpoint_list(logs, tmp_path, capsys):
    from torchrl_ext.cli import main

    code = main(["download", "atari-dqn", "Pong/2", "--root", str(tmp_path), "--local-dir", str(logs[0]),
                 "--checkpoints", "zero"])
    assert code == 2
    assert "`--checkpoints` must look like 0-4,49, got 'zero'" in capsys.readouterr().err


def _halve_frames(td):
    td["observation"] = td["observation"] // 2
    td["next", "observation"] = td["next", "observation"] // 2
    return td


def test_preprocess_method_writes_and_swaps_storage(root, tmp_path):
    rb = AtariDQNExperienceReplay("Pong/2", 16, root=root, download=False)
    source = _reference(root)
    new = rb.preprocess(_halve_frames, num_workers=2, dest=tmp_path / "half", swap=True)
    assert len(new) == len(source) and rb.storage is new
    rows = np.arange(len(source))
    np.testing.assert_array_equal(new[rows]["observation"].numpy(), source[rows]["observation"].numpy() // 2)
    np.testing.assert_array_equal(new[rows]["next", "observation"].numpy(), source[rows]["next", "observation"].numpy() // 2)
    torch.manual_seed(0)
    batch = rb.sample()
    assert int(batch["observation"].max()) <= 127


def test_preprocess_swap_keeps_frame_stacks_and_data_path(root, tmp_path):
    rb = AtariDQNExperienceReplay("Pong/2", 16, root=root, download=False, stack=4)
    rows = np.arange(len(rb.storage))
    before = rb.storage[rows]
    assert tuple(before["observation"].shape[1:]) == (4, 84, 84)
    new = rb.preprocess(_halve_frames, num_workers=0, dest=tmp_path / "half", swap=True)
    assert rb.storage is new and isinstance(new, FrameStackStorage) and new.stack == 4
    after = rb.storage[rows]
    np.testing.assert_array_equal(after["observation"].numpy(), before["observation"].numpy() // 2)
    np.testing.assert_array_equal(after["next", "observation"].numpy(), before["next", "observation"].numpy() // 2)
    assert tuple(rb.sample()["observation"].shape) == (16, 4, 84, 84)
    assert rb.data_path == tmp_path / "half"


# ---------------------------------------------------------------------- several runs
@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    make_replay_logs(base / "Pong" / "1", capacity=250, num_episodes=10, mean_len=45, seed=8)
    make_replay_logs(base / "Breakout" / "2", capacity=250, num_episodes=12, mean_len=45, seed=9)
    root = tmp_path_factory.mktemp("root2")
    AtariDQNExperienceReplay(["Pong/1", "Breakout/2"], 4, root=root, local_dir=base)
    return root, ShardedStorage(root / "Pong" / "1"), ShardedStorage(root / "Breakout" / "2"), base


def test_several_runs_sample_uniformly_from_one_buffer(two_runs):
    root, a, b, _ = two_runs
    rb = AtariDQNExperienceReplay(["Pong/1", "Breakout/2"], 256, root=root, download=False)
    assert len(rb) == len(a) + len(b) and rb.dataset_path == [root / "Pong" / "1", root / "Breakout" / "2"]
    torch.manual_seed(0)
    s = rb.sample()
    single = AtariDQNExperienceReplay("Pong/1", 4, root=root, download=False).sample()
    assert set(s.keys(True, True)) == set(single.keys(True, True))
    idx = s["index"].numpy()
    in_b = idx >= len(a)
    assert 0 < in_b.sum() < len(idx)
    for i in range(len(idx)):
        part, local = (b, idx[i] - len(a)) if in_b[i] else (a, idx[i])
        ref = part.get(int(local))
        np.testing.assert_array_equal(s["observation"][i].numpy(), ref["observation"].numpy())
        np.testing.assert_array_equal(s["next", "observation"][i].numpy(), ref["next", "observation"].numpy())
        assert int(s["action"][i]) == int(ref["action"]) and int(s["step"][i]) == int(ref["step"])
        assert int(s["episode"][i]) == int(ref["episode"]) + (a.num_episodes if in_b[i] else 0)


def test_several_runs_slices_and_stacks_never_cross_runs(two_runs):
    root, a, b, _ = two_runs
    rb = AtariDQNExperienceReplay(["Pong/1", "Breakout/2"], 64, root=root, download=False, stack=4, slice_len=8)
    assert rb.episodes.unique().numel() == a.num_episodes + b.num_episodes
    torch.manual_seed(1)
    s = rb.sample().reshape(8, 8)
    parts = rb.storage.part_of(s["index"].reshape(-1)).reshape(8, 8)
    assert (parts == parts[:, :1]).all() and (s["episode"] == s["episode"][:, :1]).all()
    first = s[:, 0]
    for k in range(8):
        part = rb.storage.parts[int(parts[k, 0])]
        local = int(first["index"][k]) - (len(a) if int(parts[k, 0]) else 0)
        np.testing.assert_array_equal(first["observation"][k].numpy(), part.get(local)["observation"].numpy())


def test_preprocess_of_several_runs_is_refused(two_runs, tmp_path):
    root, _, _, _ = two_runs
    rb = AtariDQNExperienceReplay(["Pong/1", "Breakout/2"], 4, root=root, download=False)
    with pytest.raises(ValueError, match="preprocess works on one run"):
        rb.preprocess(_halve_frames, dest=tmp_path / "x")


@pytest.mark.parametrize("bad", [[], ["Pong/1", "Pong/1"], ["Pong/1", "Tetris/2"]])
def test_bad_lists_of_ids(tmp_path, bad):
    with pytest.raises(ValueError, match=r"empty list|must not repeat a run|`dataset_id` must be '<game>/<run>'"):
        AtariDQNExperienceReplay(bad, root=tmp_path, download=False)


def test_cli_converts_several_runs(two_runs, tmp_path, capsys):
    from torchrl_ext.cli import main

    _, a, b, base = two_runs
    code = main(["download", "atari-dqn", "Pong/1", "Breakout/2", "--root", str(tmp_path), "--local-dir", str(base),
                 "--num-procs", "1"])
    assert code == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "Pong" / "1"), str(tmp_path / "Breakout" / "2")]
    assert len(ShardedStorage(tmp_path / "Pong" / "1")) == len(a)
    assert len(ShardedStorage(tmp_path / "Breakout" / "2")) == len(b)


def test_torchrl_layout_matches_torchrl_dataset_shapes(root):
    rb = AtariDQNExperienceReplay("Pong/2", 32, root=root, download=False, layout="torchrl")
    torch.manual_seed(2)
    assert rb.sample()["next", "reward"].shape == (32,)
    s = rb.storage[torch.arange(len(rb.storage))]
    keys = set(s.keys(include_nested=True, leaves_only=True))
    assert keys == {"observation", "action", "done", "terminated", "truncated", ("next", "observation"),
                    ("next", "reward"), ("next", "done"), ("next", "terminated"), ("next", "truncated")}
    n = len(rb.storage)
    assert s["next", "reward"].shape == (n,) and s["next", "reward"].dtype == torch.float32
    for key in ("done", "terminated", "truncated", ("next", "done"), ("next", "terminated"), ("next", "truncated")):
        assert s[key].dtype == torch.uint8 and s[key].shape == (n,)
    native = ShardedStorage(root / "Pong" / "2")[:]
    assert torch.equal(s["next", "done"], native["next", "terminated"][:, 0].to(torch.uint8))
    assert torch.equal(s["next", "terminated"], s["next", "done"]) and not s["next", "truncated"].any()
    assert torch.equal(s["next", "reward"], native["next", "reward"][:, 0])


def test_dataset_surface_of_torchrl_datasets(logs, tmp_path):
    from torchrl.data.datasets.common import BaseDatasetExperienceReplay

    rb = AtariDQNExperienceReplay("Pong/2", 4, root=tmp_path / "r", local_dir=logs[0])
    assert isinstance(rb, BaseDatasetExperienceReplay)
    assert rb.data_path == tmp_path / "r" / "Pong" / "2" and rb.data_path_root == tmp_path / "r"
    assert rb.data_path.is_dir()
    rb.delete()
    assert not rb.data_path.exists()
