"""kill -9 of the preprocess parent alone: its workers exit, the lock is free, a rerun finishes the job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from torchrl_ext import ShardedStorage, preprocess
from torchrl_ext.synthetic import write_synthetic

pytestmark = pytest.mark.slow  # subprocesses

ARGS = dict(episodes=8, length=(20, 40), obs_shape=(4,), shard_rows=30)
PARENT = """
import sys, time
from torchrl_ext import preprocess

def slow(td):
    time.sleep(0.05)
    return td

preprocess(sys.argv[1], slow, sys.argv[2], num_workers=2, batch_rows=4, pbar=False)
"""


def identity(td):
    return td


def _children(pid: int) -> set[int]:
    out = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        out |= {int(c) for c in (task / "children").read_text().split()}
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_exit_with_their_parent_and_rerun_finishes(tmp_path):
    src = write_synthetic(tmp_path / "src", **ARGS)
    dest = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(src), str(dest)], env=env)
    deadline = time.monotonic() + 60
    workers: set[int] = set()
    while time.monotonic() < deadline and not (len(workers) >= 2 and any((dest / "shards").glob("*"))):
        time.sleep(0.05)
        if parent.poll() is not None:
            break
        workers = _children(parent.pid)
    assert parent.poll() is None and len(workers) >= 2, "the run finished or never started its workers"
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers), "workers outlived their killed parent"
    out = preprocess(src, identity, dest, num_workers=2, pbar=False)  # the lock is free: resumes
    assert (out[:] == ShardedStorage(src)[:]).all()
