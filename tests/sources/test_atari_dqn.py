"""Replay-log conversion against the maker's own record of every transition."""

from __future__ import annotations

import gzip
import io
import json

import numpy as np
import pytest
from sources.replay_logs_maker import make_replay_logs

from torchrl_ext import ShardedStorage, ShardWriter, read_manifest
from torchrl_ext.sources.atari_dqn import DONE_NAME, convert_replay_logs

SMALL = (6, 6)


def _episodes(root):
    storage = ShardedStorage(root)
    first, length = storage.episode_bounds
    table = storage.episode_table()
    out = []
    for ep, (f, n) in enumerate(zip(first, length)):
        td = storage.get(np.arange(f, f + n))
        out.append((td, table.metadata(ep)))
    return storage, out


def _check(root, expected, game="Pong", run=1):
    storage, got = _episodes(root)
    assert len(got) == len(expected)
    for (td, meta), exp in zip(got, expected):
        n = len(exp["action"])
        assert td.batch_size[0] == n
        np.testing.assert_array_equal(td["observation"].numpy(), exp["obs"])
        np.testing.assert_array_equal(td["action"].numpy(), exp["action"])
        np.testing.assert_array_equal(td["next", "reward"].numpy()[:, 0], exp["reward"])
        done = np.zeros(n, bool)
        done[-1] = True
        np.testing.assert_array_equal(td["next", "done"].numpy()[:, 0], done)
        np.testing.assert_array_equal(td["next", "terminated"].numpy()[:, 0], done & exp["terminated"])
        np.testing.assert_array_equal(td["next", "truncated"].numpy()[:, 0], done & (not exp["terminated"]))
        assert meta["first_index"] == exp["first_index"]
        assert meta["return"] == pytest.approx(float(exp["reward"].sum()))
        assert (meta["game"], meta["run"]) == (game, run)
    return storage


@pytest.mark.parametrize(
    "capacity, mean_len, stack, seed",
    [(200, 40, 4, 0), (300, 150, 4, 1), (257, 60, 2, 2), (150, 500, 4, 3)],
    ids=["short-eps", "long-eps", "stack2", "eps-longer-than-capacity"],
)
def test_conversion_matches_writer_record(tmp_path, capacity, mean_len, stack, seed):
    rec = make_replay_logs(tmp_path / "src", capacity=capacity, num_episodes=15, mean_len=mean_len,
                           stack_size=stack, obs_shape=SMALL, seed=seed)
    convert_replay_logs(tmp_path / "src", tmp_path / "ds", stack_size=stack, game="Pong", run=1)
    expected = rec.expected_episodes()
    assert len(rec.logs) >= 3
    _check(tmp_path / "ds", expected)


def test_episode_crossing_checkpoints_is_one_episode(tmp_path):
    rec = make_replay_logs(tmp_path / "src", capacity=200, num_episodes=12, mean_len=90, obs_shape=SMALL, seed=4)
    convert_replay_logs(tmp_path / "src", tmp_path / "ds", game="Pong", run=1)
    boundary = 2 * 200 - 1  # first transition of checkpoint 2
    crossing = [e for e in rec.expected_episodes()
                if e["first_index"] < boundary < e["first_index"] + len(e["action"])]
    assert len(crossing) == 1
    _, got = _episodes(tmp_path / "ds")
    (td, meta), = [(td, m) for td, m in got if m["first_index"] == crossing[0]["first_index"]]
    assert meta["checkpoint"] == 1
    np.testing.assert_array_equal(td["observation"].numpy(), crossing[0]["obs"])


def test_padding_is_never_stored(tmp_path):
    rec = make_replay_logs(tmp_path / "src", capacity=200, num_episodes=15, mean_len=30, obs_shape=SMALL, seed=5)
    convert_replay_logs(tmp_path / "src", tmp_path / "ds", game="Pong", run=1)
    storage = ShardedStorage(tmp_path / "ds")
    obs = storage.get(np.arange(len(storage)))["observation"].numpy()
    assert (obs.reshape(len(obs), -1).max(axis=1) > 0).all()  # padding frames are all-zero
    covered = (rec.episode[: rec.logs[-1][1]] >= 0).sum()
    assert len(storage) == covered


def test_terminal_step_ends_its_own_episode(tmp_path):
    rec = make_replay_logs(tmp_path / "src", capacity=200, num_episodes=10, mean_len=40, obs_shape=SMALL, seed=6)
    convert_replay_logs(tmp_path / "src", tmp_path / "ds", game="Pong", run=1)
    _, got = _episodes(tmp_path / "ds")
    for td, meta in got[:-1]:
        g = meta["first_index"] + td.batch_size[0] - 1
        assert rec.terminal[g] == 1 and rec.episode[g] == rec.episode[meta["first_index"]]
        assert td["next", "terminated"][-1].item()


def test_last_logged_episode_is_truncated(tmp_path):
    make_replay_logs(tmp_path / "src", capacity=200, num_episodes=8, mean_len=60, obs_shape=SMALL, seed=7)
    convert_replay_logs(tmp_path / "src", tmp_path / "ds", game="Pong", run=1)
    _, got = _episodes(tmp_path / "ds")
    td, meta = got[-1]
    assert meta["terminated"] == 0
    assert td["next", "truncated"][-1].item() and not td["next", "terminated"].any()


@pytest.mark.parametrize("selection", [[1, 2], [0, 2], [2]], ids=["no-start", "gap", "single"])
def test_checkpoint_subsets(tmp_path, selection):
    rec = make_replay_logs(tmp_path / "src", capacity=200, num_episodes=15, mean_len=50, obs_shape=SMALL, seed=8)
    convert_replay_logs(tmp_path / "src", tmp_path / "ds", checkpoints=selection, game="Pong", run=1)
    _check(tmp_path / "ds", rec.expected_episodes(selection))


def test_parallel_decompression_gives_same_dataset(tmp_path):
    rec = make_replay_logs(tmp_path / "src", capacity=200, num_episodes=12, mean_len=50, obs_shape=SMALL, seed=9)
    convert_replay_logs(tmp_path / "src", tmp_path / "ds", num_procs=2, game="Pong", run=1)
    _check(tmp_path / "ds", rec.expected_episodes())
    assert not (tmp_path / "ds" / ".atari-tmp").exists()


def test_events_mark_rewards_and_terminals(tmp_path):
    make_replay_logs(tmp_path / "src", capacity=200, num_episodes=6, mean_len=40, obs_shape=SMALL, seed=10)
    convert_replay_logs(tmp_path / "src", tmp_path / "ds", game="Pong", run=1)
    m = read_manifest(tmp_path / "ds")
    rows = {}
    for rel in m.event_logs:
        with np.load(tmp_path / "ds" / rel) as z:
            for nid, row in zip(z["name_id"], z["row"]):
                rows.setdefault(str(z["names"][nid]), []).append(int(row))
    storage = ShardedStorage(tmp_path / "ds")
    td = storage.get(np.arange(len(storage)))
    reward = td["next", "reward"].numpy()[:, 0]
    assert sorted(rows["reward:+1"]) == np.flatnonzero(reward > 0).tolist()
    assert sorted(rows["reward:-1"]) == np.flatnonzero(reward < 0).tolist()
    assert sorted(rows["episode_end"]) == np.flatnonzero(td["next", "terminated"].numpy()[:, 0]).tolist()


@pytest.mark.parametrize("fail_at", [1, 3, 5])
def test_resume_after_interruption(tmp_path, monkeypatch, fail_at):
    rec = make_replay_logs(tmp_path / "src", capacity=200, num_episodes=14, mean_len=50, obs_shape=SMALL, seed=11)
    original = ShardWriter.add_episode
    calls = {"n": 0}

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > fail_at:
            raise KeyboardInterrupt("power cut")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ShardWriter, "add_episode", interrupted)
    with pytest.raises(KeyboardInterrupt, match="power cut"):
        convert_replay_logs(tmp_path / "src", tmp_path / "ds", shard_bytes=2000, game="Pong", run=1)
    assert not (tmp_path / "ds" / DONE_NAME).exists()
    assert read_manifest(tmp_path / "ds").num_episodes <= fail_at
    monkeypatch.setattr(ShardWriter, "add_episode", original)
    convert_replay_logs(tmp_path / "src", tmp_path / "ds", shard_bytes=2000, game="Pong", run=1)
    _check(tmp_path / "ds", rec.expected_episodes())
    assert json.loads((tmp_path / "ds" / DONE_NAME).read_text())["complete"] is True


def test_rerun_of_finished_conversion_adds_nothing(tmp_path):
    rec = make_replay_logs(tmp_path / "src", capacity=200, num_episodes=8, mean_len=40, obs_shape=SMALL, seed=12)
    convert_replay_logs(tmp_path / "src", tmp_path / "ds", game="Pong", run=1)
    convert_replay_logs(tmp_path / "src", tmp_path / "ds", game="Pong", run=1)
    _check(tmp_path / "ds", rec.expected_episodes())


def test_other_conversion_in_root_is_refused(tmp_path):
    make_replay_logs(tmp_path / "src", capacity=200, num_episodes=4, mean_len=40, obs_shape=SMALL)
    convert_replay_logs(tmp_path / "src", tmp_path / "ds", game="Pong", run=1)
    with pytest.raises(ValueError, match="holds a conversion of"):
        convert_replay_logs(tmp_path / "src", tmp_path / "ds", game="Breakout", run=1)


def _resave(path, arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    path.write_bytes(gzip.compress(buf.getvalue()))


def test_corrupt_checkpoint_file_is_named(tmp_path):
    make_replay_logs(tmp_path / "src", capacity=200, num_episodes=15, mean_len=40, obs_shape=SMALL)
    p = tmp_path / "src" / "replay_logs" / "$store$_reward_ckpt.1.gz"
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    with pytest.raises(ValueError, match=r"reward_ckpt\.1\.gz: (not a valid gzip stream|truncated)"):
        convert_replay_logs(tmp_path / "src", tmp_path / "ds")


def test_wrong_observation_shape_is_refused(tmp_path):
    make_replay_logs(tmp_path / "src", capacity=200, num_episodes=15, mean_len=40, obs_shape=SMALL)
    _resave(tmp_path / "src" / "replay_logs" / "$store$_observation_ckpt.0.gz", np.zeros((200, 36), np.uint8))
    with pytest.raises(ValueError, match=r"observation_ckpt\.0\.gz: expected a 3-d array, found shape \(200, 36\)"):
        convert_replay_logs(tmp_path / "src", tmp_path / "ds")


def test_wrong_column_dtype_is_refused(tmp_path):
    make_replay_logs(tmp_path / "src", capacity=200, num_episodes=15, mean_len=40, obs_shape=SMALL)
    _resave(tmp_path / "src" / "replay_logs" / "$store$_action_ckpt.0.gz", np.zeros(200, np.int64))
    with pytest.raises(ValueError, match=r"action_ckpt\.0\.gz: expected dtype int32, found int64"):
        convert_replay_logs(tmp_path / "src", tmp_path / "ds")


def test_mismatched_column_lengths_are_refused(tmp_path):
    make_replay_logs(tmp_path / "src", capacity=200, num_episodes=15, mean_len=40, obs_shape=SMALL)
    _resave(tmp_path / "src" / "replay_logs" / "$store$_terminal_ckpt.0.gz", np.zeros(199, np.uint8))
    with pytest.raises(ValueError, match=r"checkpoint 0 columns have different lengths"):
        convert_replay_logs(tmp_path / "src", tmp_path / "ds")


def test_wrong_stack_size_is_detected(tmp_path):
    make_replay_logs(tmp_path / "src", capacity=200, num_episodes=6, mean_len=40, stack_size=2, obs_shape=SMALL)
    with pytest.raises(ValueError, match="should be zero padding .* is stack_size=4 right"):
        convert_replay_logs(tmp_path / "src", tmp_path / "ds", stack_size=4)


def test_missing_checkpoint_is_refused(tmp_path):
    make_replay_logs(tmp_path / "src", capacity=200, num_episodes=15, mean_len=40, obs_shape=SMALL)
    with pytest.raises(ValueError, match=r"checkpoints \[7\] requested, found \[0, 1"):
        convert_replay_logs(tmp_path / "src", tmp_path / "ds", checkpoints=[0, 7])
