"""executor="ray": a private loopback-only local cluster, or the caller's; an actor killed mid-episode is restarted.

The private-cluster test comes first: the other tests share the session's
cluster (``ray_cluster``), which stays up until the session ends.
"""

from __future__ import annotations

import functools
import sys

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ray]
from generate_test_envs import AlwaysCrashEnv, CountingEnv

from torchrl_ext import ShardedStorage
from torchrl_ext.generate import WorkerFailed, generate
from torchrl_ext.generate.ray_executor import import_ray


def _rows(root):
    s = ShardedStorage(root)
    td = s[np.arange(len(s))]
    return {k: td[k].numpy() for k in ["observation", "action", "episode", ("next", "reward"), ("next", "done")]}


def test_missing_ray_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install torchrl-ext\[ray\]"):
        import_ray()


def test_private_cluster_is_loopback_only_and_shut_down(tmp_path):
    import ray
    from torchrl_ext.generate.ray_executor import RayExecutor

    ex = RayExecutor(CountingEnv, None, max_steps=50, num_workers=1)
    try:
        assert ray.util.get_node_ip_address() == "127.0.0.1"
        ex.submit(0, 7)
        done = []
        while not done:
            done = ex.wait(timeout=5.0)
    finally:
        ex.close()
    ((episode, result),) = done
    assert episode == 0 and result["metadata"]["seed"] == 7
    np.testing.assert_array_equal(result["data"]["observation"][:, 1], np.arange(3 + 7 % 5))  # seed 7 -> 5 steps
    assert not ray.is_initialized()


def test_ray_crash_restart_matches_process_executor(tmp_path, ray_cluster):
    flag = tmp_path / "crash-once"
    flag.touch()
    env_fn = functools.partial(CountingEnv, crash_flag=str(flag), crash_at=(2, 1))
    stats = generate(env_fn, None, tmp_path / "ray", num_episodes=5, num_workers=2, max_steps=50,
                     executor="ray", progress=False)
    assert not flag.exists() and stats.restarts == 1
    generate(CountingEnv, None, tmp_path / "ref", num_episodes=5, max_steps=50, progress=False)
    got, ref = _rows(tmp_path / "ray"), _rows(tmp_path / "ref")
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k])
    assert ray_cluster.is_initialized()  # a cluster the caller started is left running


def test_ray_restarts_exhausted_raises(tmp_path, ray_cluster):
    with pytest.raises(WorkerFailed, match=r"actor 0 failed 2 times \(max_restarts=1\)"):
        generate(AlwaysCrashEnv, None, tmp_path / "ds", num_episodes=1, max_steps=50, executor="ray",
                 max_restarts=1, progress=False)


def test_ray_workers_encode_frames(tmp_path, ray_cluster):
    """On the running cluster: encoded frames equal the process executor's."""
    from generate_test_envs import FrameEnv
    from torchrl_ext.encodings import Zstd

    generate(FrameEnv, None, tmp_path / "ref", num_episodes=4, max_steps=50, progress=False)
    generate(FrameEnv, None, tmp_path / "ray", num_episodes=4, num_workers=2, max_steps=50, executor="ray",
             shard_rows=16, encodings={"observation": Zstd(chunk_rows=4)}, progress=False)
    with pytest.raises(WorkerFailed, match=r"actor 0 could not encode episode 0: .*nothing is retried"):
        generate(CountingEnv, None, tmp_path / "bad", num_episodes=1, max_steps=50, executor="ray",
                 encodings={"observation": "video"}, progress=False)
    assert ray_cluster.is_initialized()  # a cluster the caller started is left running
    got, ref = _rows(tmp_path / "ray"), _rows(tmp_path / "ref")
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k])
