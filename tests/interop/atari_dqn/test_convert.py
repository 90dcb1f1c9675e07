"""Replay-log conversion against the maker's own record of every transition."""

from __future__ import annotations

import gzip
import io
import json

import numpy as np
import pytest
from helpers import assert_same_datasets
from interop.atari_dqn.replay_logs_maker import make_replay_logs

from torchrl_ext import ShardedStorage, ShardWriter, read_manifest
from torchrl_ext.format import FormatError
from torchrl_ext.interop.atari_dqn import LocalReplayLogs
from torchrl_ext.interop.atari_dqn import DONE_NAME, convert_replay_logs

SMALL = (6, 6)
C = 200


def _convert(src, root, **kw):
    kw.setdefault("game", "Pong")
    kw.setdefault("run", 1)
    return convert_replay_logs(src, root, progress=False, **kw)


def _episodes(root):
    """Every episode of the dataset as ``(td, metadata)``, in time order (by ``first_index``)."""
    storage = ShardedStorage(root)
    first, length = storage.episode_bounds
    table = storage.episode_table()
    out = []
    for ep, (f, n) in enumerate(zip(first, length)):
        td = storage.get(np.arange(f, f + n))
        out.append((td, table.metadata(ep)))
    table.close()
    return storage, sorted(out, key=lambda x: x[1]["first_index"])


def _check(root, expected, game="Pong", run=1):
    storage, got = _episodes(root)
    assert [m["first_index"] for _, m in got] == [e["first_index"] for e in expected]
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
        assert meta["terminated"] == int(exp["terminated"])
        assert meta["return"] == pytest.approx(float(exp["reward"].sum()))
        assert (meta["game"], meta["run"]) == (game, run)
    return storage


def _real(rec, stop):
    """Real (non-padding) transitions among the first ``stop``."""
    return int((rec.episode[:stop] >= 0).sum())


@pytest.mark.parametrize(
    "capacity, mean_len, stack, seed, final",
    [(200, 40, 4, 0, "batch_rl"), (300, 150, 4, 1, "batch_rl"), (257, 60, 2, 2, "batch_rl"),
     (150, 500, 4, 3, "batch_rl"), (200, 40, 4, 0, "running_total"), (200, 40, 4, 0, None)],
    ids=["short-eps", "long-eps", "stack2", "eps-longer-than-capacity", "running-total-final", "no-final"],
)
def test_conversion_matches_writer_record(tmp_path, capacity, mean_len, stack, seed, final):
    rec = make_replay_logs(tmp_path / "src", capacity=capacity, num_episodes=15, mean_len=mean_len,
                           stack_size=stack, obs_shape=SMALL, seed=seed, final=final)
    _convert(tmp_path / "src", tmp_path / "ds", stack_size=stack)
    assert len(rec.logs) >= 3
    storage = _check(tmp_path / "ds", rec.expected_episodes())
    assert len(storage) == _real(rec, rec.logs[-1].add_count)


# ---------------------------------------------------------------------- batch_rl's final log
def test_issue_scale_final_log_keeps_every_transition(tmp_path):
    """Three checkpoints of capacity 5,000, training ended mid-cycle: every real transition is kept."""
    rec = make_replay_logs(tmp_path / "src", capacity=5000, mean_len=300, obs_shape=(2, 2), seed=20,
                           stop_at=2 * 5000 - 1 + 740)
    assert [g.index for g in rec.logs] == [0, 1, 2] and rec.logs[-1].stored == rec.logs[-1].add_count % 5000
    _convert(tmp_path / "src", tmp_path / "ds")
    storage = _check(tmp_path / "ds", rec.expected_episodes())
    assert len(storage) == _real(rec, rec.logs[-1].add_count)


def test_final_log_right_after_full_checkpoint(tmp_path):
    rec = make_replay_logs(tmp_path / "src", capacity=C, mean_len=50, obs_shape=SMALL, seed=21, stop_at=2 * C - 1 + 57)
    final = rec.logs[-1]
    assert final.index == 2 and final.stored == final.add_count - 2 * C < rec.logs[1].stored
    _convert(tmp_path / "src", tmp_path / "ds")
    storage = _check(tmp_path / "ds", rec.expected_episodes())
    # new rows only: C - 1 (transition 2C - 1) and 0 .. cursor - 1; the stale rows past the cursor stay out
    assert len(storage) == _real(rec, final.add_count)
    _, got = _episodes(tmp_path / "ds")
    last_first, last_stop = rec.episode_at(final.add_count - 1)
    td, meta = got[-1]
    assert (meta["first_index"], td.batch_size[0]) == (last_first, last_stop - last_first)
    assert meta["terminated"] == 0  # training ended inside it


def test_spanning_episode_terminal_in_final_file(tmp_path):
    rec = make_replay_logs(tmp_path / "src", capacity=C, mean_len=30, obs_shape=SMALL, seed=22, stop_at=2 * C - 1 + 150)
    first, stop = rec.episode_at(2 * C - 2)  # the last transition of checkpoint 1
    assert first < 2 * C - 1 < stop < rec.logs[-1].add_count and rec.terminal[stop - 1]
    _convert(tmp_path / "src", tmp_path / "ds")
    _check(tmp_path / "ds", rec.expected_episodes())
    _, got = _episodes(tmp_path / "ds")
    (td, meta), = [(td, m) for td, m in got if m["first_index"] == first]
    assert td.batch_size[0] == stop - first and meta["terminated"] == 1 and meta["checkpoint"] == 1
    np.testing.assert_array_equal(td["observation"].numpy(), rec.obs[first:stop])
    assert td["next", "terminated"][-1].item() and not td["next", "truncated"].any()


def test_final_log_with_cursor_zero(tmp_path):
    rec = make_replay_logs(tmp_path / "src", capacity=C, mean_len=40, obs_shape=SMALL, seed=23, stop_at=2 * C)
    assert rec.logs[-1].stored == 0 and rec.logs[-1].add_count == 2 * C
    _convert(tmp_path / "src", tmp_path / "ds")
    storage = _check(tmp_path / "ds", rec.expected_episodes())
    assert len(storage) == _real(rec, 2 * C)  # row C - 1 of the final file is transition 2C - 1
    assert rec.episode[2 * C - 1] >= 0


def test_final_log_after_lost_lap(tmp_path, caplog):
    rec = make_replay_logs(tmp_path / "src", capacity=C, mean_len=30, obs_shape=SMALL, seed=25,
                           stop_at=3 * C - 1 + 40, lose_laps=(2,))
    assert [(g.index, g.stored) for g in rec.logs] == [(0, C - 1), (1, 2 * C - 1), (2, rec.logs[-1].add_count % C)]
    with caplog.at_level("WARNING"):
        _convert(tmp_path / "src", tmp_path / "ds")
    assert "at least 1 lap(s)" in caplog.text
    storage = _check(tmp_path / "ds", rec.expected_episodes())
    _, got = _episodes(tmp_path / "ds")
    # the episode running into the lost lap is cut; after it, the final file starts without context
    cut = [m for _, m in got if m["first_index"] < 2 * C - 1 and m["terminated"] == 0]
    assert len(cut) == 1
    assert min(m["first_index"] for _, m in got if m["first_index"] >= 2 * C - 1) >= rec.logs[-1].add_count - C
    assert len(storage) < _real(rec, rec.logs[-1].add_count)


def test_final_log_right_after_regular_log_adds_nothing(tmp_path):
    rec = make_replay_logs(tmp_path / "src", capacity=C, mean_len=40, obs_shape=SMALL, seed=25, stop_at=2 * C - 1)
    assert [(g.stored, g.add_count) for g in rec.logs[1:]] == [(2 * C - 1, 2 * C - 1), (C - 1, 2 * C - 1)]
    _convert(tmp_path / "src", tmp_path / "ds")
    _convert(tmp_path / "src", tmp_path / "ref", checkpoints=[0, 1])
    _check(tmp_path / "ds", rec.expected_episodes())
    assert len(ShardedStorage(tmp_path / "ds")) == len(ShardedStorage(tmp_path / "ref"))


def test_final_file_alone(tmp_path):
    rec = make_replay_logs(tmp_path / "src", capacity=C, mean_len=30, obs_shape=SMALL, seed=26, stop_at=3 * C - 1 + 90)
    _convert(tmp_path / "src", tmp_path / "ds", checkpoints=[3])
    _check(tmp_path / "ds", rec.expected_episodes([3]))


def test_decreasing_add_count_before_the_last_file_is_refused(tmp_path):
    make_replay_logs(tmp_path / "src", capacity=C, num_episodes=15, mean_len=40, obs_shape=SMALL)
    _resave(tmp_path / "src" / "replay_logs" / "add_count_ckpt.1.gz", np.array(5, np.int64))
    with pytest.raises(FormatError, match=r"add_count_ckpt\.1\.gz: stores add_count 5, not more than checkpoint 0's"):
        _convert(tmp_path / "src", tmp_path / "ds")


# ---------------------------------------------------------------------- episodes
def test_episode_crossing_checkpoints_is_one_episode(tmp_path):
    rec = make_replay_logs(tmp_path / "src", capacity=C, num_episodes=12, mean_len=90, obs_shape=SMALL, seed=4)
    _convert(tmp_path / "src", tmp_path / "ds")
    boundary = 2 * C - 1  # first transition of checkpoint 2
    crossing = [e for e in rec.expected_episodes()
                if e["first_index"] < boundary < e["first_index"] + len(e["action"])]
    assert len(crossing) == 1
    _, got = _episodes(tmp_path / "ds")
    (td, meta), = [(td, m) for td, m in got if m["first_index"] == crossing[0]["first_index"]]
    assert meta["checkpoint"] == 1
    np.testing.assert_array_equal(td["observation"].numpy(), crossing[0]["obs"])


def test_padding_is_never_stored(tmp_path):
    rec = make_replay_logs(tmp_path / "src", capacity=C, num_episodes=15, mean_len=30, obs_shape=SMALL, seed=5)
    _convert(tmp_path / "src", tmp_path / "ds")
    storage = ShardedStorage(tmp_path / "ds")
    obs = storage.get(np.arange(len(storage)))["observation"].numpy()
    assert (obs.reshape(len(obs), -1).max(axis=1) > 0).all()  # padding frames are all-zero
    assert len(storage) == _real(rec, rec.logs[-1].add_count)


def test_terminal_step_ends_its_own_episode(tmp_path):
    rec = make_replay_logs(tmp_path / "src", capacity=C, num_episodes=10, mean_len=40, obs_shape=SMALL, seed=6)
    _convert(tmp_path / "src", tmp_path / "ds")
    _, got = _episodes(tmp_path / "ds")
    for td, meta in got[:-1]:
        g = meta["first_index"] + td.batch_size[0] - 1
        assert rec.terminal[g] == 1 and rec.episode[g] == rec.episode[meta["first_index"]]
        assert td["next", "terminated"][-1].item()


def test_last_logged_episode_is_truncated(tmp_path):
    make_replay_logs(tmp_path / "src", capacity=C, num_episodes=8, mean_len=60, obs_shape=SMALL, seed=7)
    _convert(tmp_path / "src", tmp_path / "ds")
    _, got = _episodes(tmp_path / "ds")
    td, meta = got[-1]
    assert meta["terminated"] == 0
    assert td["next", "truncated"][-1].item() and not td["next", "terminated"].any()


def test_output_order_is_the_order_episodes_complete(tmp_path):
    """The episode holding a checkpoint's row C - 1 (its first transition) follows that checkpoint's others."""
    rec = make_replay_logs(tmp_path / "src", capacity=C, num_episodes=24, mean_len=40, obs_shape=SMALL, seed=27)
    assert rec.logs[2].add_count == 3 * C - 1
    _convert(tmp_path / "src", tmp_path / "ds")
    table = ShardedStorage(tmp_path / "ds").episode_table()
    firsts = [table.metadata(e)["first_index"] for e in range(len(rec.expected_episodes()))]
    table.close()
    holder = rec.episode_at(2 * C - 1)[0]  # the episode holding checkpoint 2's first transition
    later = [f for f in firsts if f > holder and f < 3 * C - 1 and rec.episode_at(f)[1] <= 3 * C - 1]
    assert later and firsts.index(holder) > max(firsts.index(f) for f in later)
    assert sorted(firsts) == [e["first_index"] for e in rec.expected_episodes()]


@pytest.mark.parametrize("selection", [[1, 2], [0, 2], [2]], ids=["no-start", "gap", "single"])
def test_checkpoint_subsets(tmp_path, selection):
    rec = make_replay_logs(tmp_path / "src", capacity=C, num_episodes=15, mean_len=50, obs_shape=SMALL, seed=8)
    _convert(tmp_path / "src", tmp_path / "ds", checkpoints=selection)
    _check(tmp_path / "ds", rec.expected_episodes(selection))


def test_events_mark_rewards_and_terminals(tmp_path):
    from torchrl_ext.format import read_event_log

    make_replay_logs(tmp_path / "src", capacity=C, num_episodes=6, mean_len=40, obs_shape=SMALL, seed=10)
    _convert(tmp_path / "src", tmp_path / "ds")
    m = read_manifest(tmp_path / "ds")
    rows = {}
    for rel in m.event_logs:
        z = read_event_log(tmp_path / "ds" / rel)
        for nid, row in zip(z["name_id"], z["row"]):
            rows.setdefault(str(z["names"][nid]), []).append(int(row))
    storage = ShardedStorage(tmp_path / "ds")
    td = storage.get(np.arange(len(storage)))
    reward = td["next", "reward"].numpy()[:, 0]
    assert sorted(rows["reward:+1"]) == np.flatnonzero(reward > 0).tolist()
    assert sorted(rows["reward:-1"]) == np.flatnonzero(reward < 0).tolist()
    assert sorted(rows["episode_end"]) == np.flatnonzero(td["next", "terminated"].numpy()[:, 0]).tolist()


def test_encodings_are_passed_to_the_writer(tmp_path):
    rec = make_replay_logs(tmp_path / "src", capacity=C, num_episodes=8, mean_len=40, obs_shape=SMALL, seed=28)
    _convert(tmp_path / "src", tmp_path / "ds", encodings={"observation": "zstd"})
    column = read_manifest(tmp_path / "ds").column(("observation",))
    assert column.encoding == "zstd"
    _check(tmp_path / "ds", rec.expected_episodes())


# ---------------------------------------------------------------------- resuming
class _CountingLogs(LocalReplayLogs):
    """Local logs that remember which files were opened."""

    def __init__(self, src):
        super().__init__(src)
        self.opened = []

    def open(self, name):
        self.opened.append(name)
        return super().open(name)


@pytest.mark.parametrize("fail_at", [1, 3, 5, *(pytest.param(k, marks=pytest.mark.slow) for k in (9, 13))])  # late: long
def test_resume_after_interruption_gives_the_uninterrupted_dataset(tmp_path, monkeypatch, fail_at):
    rec = make_replay_logs(tmp_path / "src", capacity=C, num_episodes=24, mean_len=40, obs_shape=SMALL, seed=11)
    _convert(tmp_path / "src", tmp_path / "ref", shard_bytes=2000)
    original = ShardWriter.add_episode
    calls = {"n": 0}

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > fail_at:
            raise KeyboardInterrupt("power cut")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ShardWriter, "add_episode", interrupted)
    with pytest.raises(KeyboardInterrupt, match="power cut"):
        _convert(tmp_path / "src", tmp_path / "ds", shard_bytes=2000)
    assert not (tmp_path / "ds" / DONE_NAME).exists()
    committed = read_manifest(tmp_path / "ds").num_episodes
    assert committed <= fail_at
    monkeypatch.setattr(ShardWriter, "add_episode", original)
    logs = _CountingLogs(tmp_path / "src")
    _convert(logs, tmp_path / "ds", shard_bytes=2000)
    assert_same_datasets(tmp_path / "ds", tmp_path / "ref")
    assert json.loads((tmp_path / "ds" / DONE_NAME).read_text())["complete"] is True
    # observations are read again only from the checkpoint of the first episode not written
    table = ShardedStorage(tmp_path / "ref").episode_table()
    first_ckpt = min(table.metadata(e)["checkpoint"] for e in range(committed, ShardedStorage(tmp_path / "ref").num_episodes))
    table.close()
    frames_read = sorted({int(n.split(".")[1]) for n in logs.opened if n.startswith("$store$_observation")})
    assert frames_read == list(range(first_ckpt, rec.logs[-1].index + 1))


def test_rerun_of_finished_conversion_reads_nothing(tmp_path):
    rec = make_replay_logs(tmp_path / "src", capacity=C, num_episodes=8, mean_len=40, obs_shape=SMALL, seed=12)
    _convert(tmp_path / "src", tmp_path / "ds")
    logs = _CountingLogs(tmp_path / "src")
    _convert(logs, tmp_path / "ds")
    assert logs.opened == []
    _check(tmp_path / "ds", rec.expected_episodes())


def test_crash_after_the_last_commit_only_writes_the_marker(tmp_path):
    make_replay_logs(tmp_path / "src", capacity=C, num_episodes=10, mean_len=40, obs_shape=SMALL, seed=15)
    _convert(tmp_path / "src", tmp_path / "ref")
    _convert(tmp_path / "src", tmp_path / "ds")
    (tmp_path / "ds" / DONE_NAME).unlink()
    logs = _CountingLogs(tmp_path / "src")
    _convert(logs, tmp_path / "ds")
    assert not [n for n in logs.opened if n.startswith("$store$_observation")]
    assert (tmp_path / "ds" / DONE_NAME).is_file()
    assert_same_datasets(tmp_path / "ds", tmp_path / "ref")


def test_other_logs_in_root_are_refused_on_resume(tmp_path, monkeypatch):
    make_replay_logs(tmp_path / "a", capacity=C, num_episodes=12, mean_len=40, obs_shape=SMALL, seed=13)
    make_replay_logs(tmp_path / "b", capacity=C, num_episodes=12, mean_len=40, obs_shape=SMALL, seed=14)
    original = ShardWriter.add_episode
    calls = {"n": 0}

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 4:
            raise KeyboardInterrupt("power cut")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ShardWriter, "add_episode", interrupted)
    with pytest.raises(KeyboardInterrupt, match="power cut"):
        _convert(tmp_path / "a", tmp_path / "ds", shard_bytes=1000, checkpoints=[0, 1, 2])
    monkeypatch.setattr(ShardWriter, "add_episode", original)
    with pytest.raises(ValueError, match="was converted from other logs, use another root"):
        _convert(tmp_path / "b", tmp_path / "ds", shard_bytes=1000, checkpoints=[0, 1, 2])


def test_other_conversion_in_root_is_refused(tmp_path):
    make_replay_logs(tmp_path / "src", capacity=C, num_episodes=4, mean_len=40, obs_shape=SMALL)
    _convert(tmp_path / "src", tmp_path / "ds")
    with pytest.raises(ValueError, match="holds a conversion of"):
        _convert(tmp_path / "src", tmp_path / "ds", game="Breakout")


# ---------------------------------------------------------------------- bad files
def _resave(path, arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    path.write_bytes(gzip.compress(buf.getvalue()))


def test_corrupt_checkpoint_file_is_named(tmp_path):
    make_replay_logs(tmp_path / "src", capacity=C, num_episodes=15, mean_len=40, obs_shape=SMALL)
    p = tmp_path / "src" / "replay_logs" / "$store$_reward_ckpt.1.gz"
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    with pytest.raises(FormatError, match=r"reward_ckpt\.1\.gz: (not a valid gzip stream|truncated)"):
        _convert(tmp_path / "src", tmp_path / "ds")


def test_corrupt_observation_file_is_named(tmp_path):
    make_replay_logs(tmp_path / "src", capacity=C, num_episodes=15, mean_len=40, obs_shape=SMALL)
    p = tmp_path / "src" / "replay_logs" / "$store$_observation_ckpt.1.gz"
    p.write_bytes(p.read_bytes()[:-40])
    with pytest.raises(FormatError, match=r"observation_ckpt\.1\.gz: (not a valid gzip stream|truncated)"):
        _convert(tmp_path / "src", tmp_path / "ds")


def test_wrong_observation_shape_is_refused(tmp_path):
    make_replay_logs(tmp_path / "src", capacity=C, num_episodes=15, mean_len=40, obs_shape=SMALL)
    _resave(tmp_path / "src" / "replay_logs" / "$store$_observation_ckpt.0.gz", np.zeros((C, 36), np.uint8))
    with pytest.raises(FormatError, match=r"observation_ckpt\.0\.gz: expected a 3-d array, found shape \(200, 36\)"):
        _convert(tmp_path / "src", tmp_path / "ds")


def test_wrong_column_dtype_is_refused(tmp_path):
    make_replay_logs(tmp_path / "src", capacity=C, num_episodes=15, mean_len=40, obs_shape=SMALL)
    _resave(tmp_path / "src" / "replay_logs" / "$store$_action_ckpt.0.gz", np.zeros(C, np.int64))
    with pytest.raises(FormatError, match=r"action_ckpt\.0\.gz: expected dtype int32, found int64"):
        _convert(tmp_path / "src", tmp_path / "ds")


def test_mismatched_column_lengths_are_refused(tmp_path):
    make_replay_logs(tmp_path / "src", capacity=C, num_episodes=15, mean_len=40, obs_shape=SMALL)
    _resave(tmp_path / "src" / "replay_logs" / "$store$_reward_ckpt.0.gz", np.zeros(C - 1, np.float32))
    with pytest.raises(FormatError, match=r"reward_ckpt\.0\.gz: 199 rows, expected 200, .* checkpoint 0 columns have different lengths"):
        _convert(tmp_path / "src", tmp_path / "ds")


def test_wrong_stack_size_is_detected(tmp_path):
    make_replay_logs(tmp_path / "src", capacity=C, num_episodes=6, mean_len=40, stack_size=2, obs_shape=SMALL)
    with pytest.raises(FormatError, match=r"_ckpt\.0\.gz: transitions \d+\.\.\d+ should be zero padding .* is stack_size=4 right"):
        _convert(tmp_path / "src", tmp_path / "ds", stack_size=4)


def test_missing_checkpoint_is_refused(tmp_path):
    make_replay_logs(tmp_path / "src", capacity=C, num_episodes=15, mean_len=40, obs_shape=SMALL)
    with pytest.raises(ValueError, match=r"checkpoints \[7\] requested, found \[0, 1"):
        _convert(tmp_path / "src", tmp_path / "ds", checkpoints=[0, 7])
