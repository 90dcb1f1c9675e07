"""generate() SIGKILLed at seeded fsync/rename calls: the dataset opens, a rerun finishes identical."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import kill_hook

from torchrl_ext import ShardedStorage
from torchrl_ext.generate import generate

pytestmark = pytest.mark.slow  # subprocesses

HERE = Path(__file__).parent
ARGS = dict(num_episodes=12, num_workers=2, max_steps=50, seed=3, shard_rows=7, progress=False)
CHILD = kill_hook("os.kill(os.getpid(), 9)") + """
sys.path.insert(0, sys.argv[3])
from generate_test_envs import CountingEnv
from torchrl_ext.generate import generate
generate(CountingEnv, None, sys.argv[1], **%r)
""" % (ARGS,)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from generate_test_envs import CountingEnv

    root = tmp_path_factory.mktemp("ref") / "ds"
    generate(CountingEnv, None, root, **ARGS)
    return ShardedStorage(root)


@pytest.mark.parametrize("kill_at", [int(k) for k in np.random.default_rng(11).integers(2, 60, 4)])
def test_generate_killed_mid_write_resumes_identically(tmp_path, reference, kill_at):
    from generate_test_envs import CountingEnv

    root = tmp_path / "ds"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(root), str(kill_at), str(HERE)],
                          capture_output=True, env=env, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
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
