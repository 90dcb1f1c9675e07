"""generate() with the process executor on small picklable envs: order, exactly-once, crashes, resume, events."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from generate_test_envs import (AlwaysCrashEnv, CounterAgent, CountingEnv, ResetFailsEnv, make_plain_policy,
                                missing_env, t_events)
from helpers import read_events

from torchrl_ext import ShardedStorage
from torchrl_ext.generate import WorkerFailed, generate


def _length(seed: int) -> int:
    return 3 + seed % 5


def _episodes(root) -> list[dict]:
    s = ShardedStorage(root)
    first, length = s.episode_bounds
    td = s[np.arange(len(s))]
    out = []
    for a, n in zip(first.tolist(), length.tolist()):
        out.append({k: td[a:a + n][k].numpy() for k in
                    ["observation", "action", "episode", ("next", "reward"), ("next", "terminated"),
                     ("next", "truncated"), ("next", "done"), ("next", "observation")]})
    return out


def _events(root) -> list[tuple[int, int, str, float]]:
    return sorted((e, t, name, v) for e, t, _, name, v in read_events(root))


@pytest.mark.parametrize("num_workers", [1, 2])
def test_episodes_written_once_in_order(tmp_path, num_workers):
    # lengths 3..7 differ per seed, so workers finish out of order
    stats = generate(CountingEnv, None, tmp_path / "ds", num_episodes=7, num_workers=num_workers,
                     max_steps=50, seed=10, progress=False)
    eps = _episodes(tmp_path / "ds")
    assert [int(e["observation"][0, 0]) for e in eps] == list(range(10, 17))
    assert [len(e["action"]) for e in eps] == [_length(s) for s in range(10, 17)]
    assert [int(e["episode"][0]) for e in eps] == list(range(7))
    assert (stats.generated, stats.skipped, stats.restarts) == (7, 0, 0)


def test_ted_values(tmp_path):
    generate(CountingEnv, None, tmp_path / "ds", num_episodes=1, num_workers=1, max_steps=50, seed=2,
             progress=False)
    (ep,) = _episodes(tmp_path / "ds")  # seed 2 -> 5 steps
    np.testing.assert_array_equal(ep["observation"], [[2, t] for t in range(5)])
    np.testing.assert_array_equal(ep["next", "observation"], [[2, t] for t in range(1, 6)])
    np.testing.assert_array_equal(ep["next", "reward"][:, 0], [1, 0, 1, -1, 1])
    assert ep["next", "reward"].dtype == np.float32
    np.testing.assert_array_equal(ep["next", "terminated"][:, 0], [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(ep["next", "done"][:, 0], [0, 0, 0, 0, 1])
    assert not ep["next", "truncated"].any()


def test_max_steps_truncates(tmp_path):
    generate(CountingEnv, None, tmp_path / "ds", num_episodes=1, max_steps=2, seed=4, progress=False)
    (ep,) = _episodes(tmp_path / "ds")
    np.testing.assert_array_equal(ep["next", "truncated"][:, 0], [0, 1])
    np.testing.assert_array_equal(ep["next", "terminated"][:, 0], [0, 0])
    np.testing.assert_array_equal(ep["next", "done"][:, 0], [0, 1])


def test_events_and_metadata(tmp_path):
    generate(CountingEnv, None, tmp_path / "ds", num_episodes=1, max_steps=50, seed=2, events_fn=t_events,
             progress=False)
    assert _events(tmp_path / "ds") == sorted([
        (0, 0, "reward:+1", 1.0), (0, 2, "reward:+1", 1.0), (0, 4, "reward:+1", 1.0),
        (0, 3, "reward:-1", -1.0), (0, 1, "life_lost", 2.0), (0, 1, "t_is_2", 2.0),
        (0, 4, "episode_end", 2.0),
    ])
    meta = ShardedStorage(tmp_path / "ds").episode_table().row(0)
    assert (meta["seed"], meta["episode_return"], meta["length"], meta["worker"]) == (2, 2.0, 5, 0)
    assert meta["env_id"] == "CountingEnv"


@pytest.mark.parametrize("policy_fn, expected", [
    (CounterAgent, [0, 1, 2, 0, 1, 2, 0]),  # act(obs, memory) carries the memory across steps
    (make_plain_policy, [0, 1, 2, 0, 1, 2, 0]),  # plain callable obs -> action (obs[1] = t)
])
def test_policies(tmp_path, policy_fn, expected):
    generate(CountingEnv, policy_fn, tmp_path / "ds", num_episodes=1, max_steps=50, seed=4, progress=False)
    (ep,) = _episodes(tmp_path / "ds")
    np.testing.assert_array_equal(ep["action"], expected)


def test_crashed_worker_is_restarted_and_episode_replayed(tmp_path):
    flag = tmp_path / "crash-once"
    flag.touch()
    env_fn = functools.partial(CountingEnv, crash_flag=str(flag), crash_at=(3, 2))
    stats = generate(env_fn, None, tmp_path / "ds", num_episodes=6, num_workers=2, max_steps=50, progress=False)
    assert not flag.exists()
    assert stats.restarts == 1
    generate(CountingEnv, None, tmp_path / "ref", num_episodes=6, num_workers=1, max_steps=50, progress=False)
    got, ref = _episodes(tmp_path / "ds"), _episodes(tmp_path / "ref")
    assert len(got) == 6
    for g, r in zip(got, ref):
        for k in r:
            np.testing.assert_array_equal(g[k], r[k])


def test_exception_in_env_counts_as_crash(tmp_path):
    flag = tmp_path / "flag"
    flag.touch()
    env_fn = functools.partial(CountingEnv, crash_flag=str(flag), crash_at=(0, 1), raise_instead=True)
    with pytest.raises(WorkerFailed, match="failed 2 times .*env exploded"):
        generate(env_fn, None, tmp_path / "ds", num_episodes=2, max_steps=50, max_restarts=1, progress=False)


def test_an_error_in_reset_is_not_retried(tmp_path):
    log = tmp_path / "resets.log"
    env_fn = functools.partial(ResetFailsEnv, log=str(log))
    with pytest.raises(WorkerFailed, match=r"could not start episode 1: reset with seed 1 raised ValueError: no level "
                                           r"for seed 1; fix `env_fn`/`policy_fn` \(nothing is retried"):
        generate(env_fn, None, tmp_path / "ds", num_episodes=3, max_steps=50, max_restarts=3, progress=False)
    assert log.read_text().split().count("1") == 1  # reset once with seed 1, never again


def test_restarts_exhausted_raises(tmp_path):
    with pytest.raises(WorkerFailed, match=r"failed 3 times \(max_restarts=2\); last failure: exit code 4"):
        generate(AlwaysCrashEnv, None, tmp_path / "ds", num_episodes=2, max_steps=50, max_restarts=2,
                 progress=False)
    assert not (tmp_path / "ds").exists()  # a failed first run leaves nothing behind


def test_env_that_cannot_be_built_fails_at_once_with_its_message(tmp_path):
    with pytest.raises(WorkerFailed, match=r"could not build its env or agent: .*NoSuchGame.*nothing is retried"):
        generate(missing_env, None, tmp_path / "ds", num_episodes=2, num_workers=2, max_steps=50,
                 max_restarts=5, progress=False)


def test_resume_generates_only_missing_episodes(tmp_path):
    log = tmp_path / "resets.log"
    env_fn = functools.partial(CountingEnv, log=str(log))
    generate(env_fn, None, tmp_path / "ds", num_episodes=3, num_workers=2, max_steps=50, seed=5, progress=False)
    log.unlink()
    stats = generate(env_fn, None, tmp_path / "ds", num_episodes=6, num_workers=2, max_steps=50, seed=5,
                     progress=False)
    assert sorted(int(x) for x in log.read_text().split()) == [8, 9, 10]
    assert (stats.generated, stats.skipped) == (3, 3)
    generate(CountingEnv, None, tmp_path / "ref", num_episodes=6, max_steps=50, seed=5, progress=False)
    for g, r in zip(_episodes(tmp_path / "ds"), _episodes(tmp_path / "ref"), strict=True):
        for k in r:
            np.testing.assert_array_equal(g[k], r[k])


def test_resume_with_other_seed_is_refused(tmp_path):
    generate(CountingEnv, None, tmp_path / "ds", num_episodes=1, max_steps=50, seed=5, progress=False)
    with pytest.raises(ValueError, match="generated with seed=5, max_steps=50, got seed=6"):
        generate(CountingEnv, None, tmp_path / "ds", num_episodes=2, max_steps=50, seed=6, progress=False)


def test_unpicklable_env_fn_is_refused(tmp_path):
    with pytest.raises(TypeError, match="`env_fn` must be picklable"):
        generate(lambda: CountingEnv(), None, tmp_path / "ds", num_episodes=1, progress=False)


@pytest.mark.parametrize("kwargs, match", [
    ({"executor": "threads"}, "`executor` must be one of"),
    ({"num_workers": 0}, "`num_workers` must be a positive int"),
    ({"num_episodes": -1}, "`num_episodes` must be a positive int"),
    ({"max_restarts": -1}, "`max_restarts` must be an int >= 0"),
])
def test_bad_arguments(tmp_path, kwargs, match):
    args = {"num_episodes": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        generate(CountingEnv, None, tmp_path / "ds", progress=False, **args)
