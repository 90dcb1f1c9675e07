"""generate() SIGKILLed at seeded fsync/rename calls: the dataset opens, a rerun finishes identical.

Each trial runs in a fork of the test process (``run_killed``), which starts
its workers from a fork server of its own, as a fresh interpreter would.
"""

from __future__ import annotations

import signal

import numpy as np
import pytest
from helpers import built_once, run_killed

from torchrl_ext import ShardedStorage
from torchrl_ext.generate import generate

pytestmark = pytest.mark.slow  # a crash campaign: every trial starts worker processes

ARGS = dict(num_episodes=12, num_workers=2, max_steps=50, seed=3, shard_rows=7, progress=False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from generate_test_envs import CountingEnv

    def build(directory):
        generate(CountingEnv, None, directory / "ds", **ARGS)
        return ShardedStorage(directory / "ds")

    return built_once(tmp_path_factory, "generate_kill_resume_reference", build)


@pytest.mark.parametrize("kill_at", [int(k) for k in np.random.default_rng(11).integers(2, 60, 4)])
def test_generate_killed_mid_write_resumes_identically(tmp_path, reference, kill_at):
    from generate_test_envs import CountingEnv

    root = tmp_path / "ds"
    assert run_killed(kill_at, generate, CountingEnv, None, root, sigkill=True, **ARGS) == -signal.SIGKILL
    if (root / "dataset.json").exists():
        ShardedStorage(root)  # whatever was committed opens
    generate(CountingEnv, None, root, **ARGS)
    got = ShardedStorage(root)
    assert len(got) == len(reference) and (got[:] == reference[:]).all()
    ta, tb = got.episode_table(), reference.episode_table()
    strip = ("worker",)  # which worker played an episode depends on timing
    assert [{k: v for k, v in ta.metadata(e).items() if k not in strip} for e in range(got.num_episodes)] == \
        [{k: v for k, v in tb.metadata(e).items() if k not in strip} for e in range(reference.num_episodes)]
    got.verify()
