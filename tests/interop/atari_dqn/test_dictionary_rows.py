"""The observation dictionary of a converted run is trained on frames from across its checkpoints."""

from __future__ import annotations

import pytest
from interop.atari_dqn.replay_logs_maker import make_replay_logs

from torchrl_ext import ShardedStorage
from torchrl_ext.encodings import train_dictionary
from torchrl_ext.interop.atari_dqn import LocalReplayLogs, convert_replay_logs
from torchrl_ext.interop.atari_dqn.dictionary_rows import spread_frames


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    src = tmp_path_factory.mktemp("logs")
    rec = make_replay_logs(src, capacity=300, num_episodes=30, mean_len=50, obs_shape=(84, 84), seed=4)
    return src, rec


def test_spread_frames_are_logged_frames_from_the_first_to_the_last_checkpoint(run):
    src, rec = run
    logs = LocalReplayLogs(src)
    assert len(logs.checkpoints()) >= 4
    frames = spread_frames(logs, logs.checkpoints(), rows=60)
    where = {f.tobytes(): g for g, f in enumerate(rec.obs) if rec.episode[g] >= 0}
    added = [where[f.tobytes()] for f in frames]  # a KeyError names a frame that was never logged (or padding)
    assert len(frames) >= 50
    assert min(added) < rec.capacity  # from the first checkpoint
    assert max(added) >= rec.logs[-2].add_count - rec.capacity  # and from the last regular one or later


def test_conversions_train_on_spread_frames_by_default_and_on_the_first_rows_when_asked(run, tmp_path):
    src, _ = run
    logs = LocalReplayLogs(src)
    spread = convert_replay_logs(src, tmp_path / "spread", progress=False)
    first = convert_replay_logs(src, tmp_path / "first", progress=False, dictionary_rows="first")
    assert (spread / "dicts" / "observation.zdict").read_bytes() == train_dictionary(
        spread_frames(logs, logs.checkpoints()))
    assert (first / "dicts" / "observation.zdict").read_bytes() != (spread / "dicts" / "observation.zdict").read_bytes()
    a, b = ShardedStorage(spread), ShardedStorage(first)
    assert len(a) == len(b) > 0
    assert (a.get(range(len(a))) == b.get(range(len(b)))).all()  # the same rows either way


def test_an_unknown_dictionary_choice_is_refused_before_anything_is_written(run, tmp_path):
    src, _ = run
    with pytest.raises(ValueError, match=r"`dictionary_rows` must be 'spread' or 'first', got 'all'"):
        convert_replay_logs(src, tmp_path / "x", progress=False, dictionary_rows="all")
    assert not (tmp_path / "x").exists()
