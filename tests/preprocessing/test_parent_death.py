"""kill -9 of the preprocess parent alone: its workers exit, the lock is free, a rerun finishes the job.

The parent is a fork of the test process (torch already imported), its
workers forks of the parent, as ``preprocess`` starts them.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from pathlib import Path

import pytest

from torchrl_ext import ShardedStorage, preprocess
from torchrl_ext.synthetic import write_synthetic

pytestmark = pytest.mark.slow  # worker processes, and a parent killed while they run

ARGS = dict(episodes=8, length=(20, 40), obs_shape=(4,), shard_rows=30)


def identity(td):
    return td


def slow(td):
    time.sleep(0.05)
    return td


def _start_parent(src: Path, dest: Path) -> int:
    """Forks the parent: it runs a slow ``preprocess`` with two workers, and never returns into pytest."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            preprocess(src, slow, dest, num_workers=2, batch_rows=4, pbar=False)
            code = 0
        except BaseException:  # noqa: BLE001 - any failure of the parent is its exit status 1
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


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
    parent = _start_parent(src, dest)
    deadline = time.monotonic() + 60
    workers: set[int] = set()
    ended = False
    while time.monotonic() < deadline and not (len(workers) >= 2 and any((dest / "shards").glob("*"))):
        time.sleep(0.05)
        ended = os.waitpid(parent, os.WNOHANG)[0] != 0
        if ended:
            break
        workers = _children(parent)
    assert not ended and len(workers) >= 2, "the run finished or never started its workers"
    os.kill(parent, signal.SIGKILL)
    os.waitpid(parent, 0)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers), "workers outlived their killed parent"
    out = preprocess(src, identity, dest, num_workers=2, pbar=False)  # the lock is free: resumes
    assert (out[:] == ShardedStorage(src)[:]).all()
