"""Helpers shared by several test modules (``tests`` is on ``sys.path``)."""

from __future__ import annotations

import fcntl
import importlib
import multiprocessing.forkserver
import os
import pickle
import shutil
import signal
import subprocess
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torchrl_ext.format import read_event_log, read_manifest

__all__ = ["KILL_EXIT", "built_once", "kill_hook", "read_events", "run_cli", "run_killed", "tree_snapshot"]

KILL_EXIT = 17  # exit status of a child stopped by ``os._exit`` at its chosen call


def read_events(root: str | os.PathLike) -> list[tuple[int, int, int, str, float]]:
    """Every logged event of a dataset as ``(episode, step, row, name, value)``, in log order."""
    root = Path(root)
    out = []
    for rel in read_manifest(root).event_logs:
        log = read_event_log(root / rel)
        names = log["names"][log["name_id"]]
        out += list(zip(log["episode"].tolist(), log["step"].tolist(), log["row"].tolist(), names.tolist(),
                        log["value"].tolist()))
    return out


def write_scored_dataset(root: Path) -> Path:
    """8 episodes of 10 rows, Score = 10 * episode, in 4 shards of 2 episodes; a "jump" event at step 1 of each,
    kills in episodes 2 and 5; the event index saved."""
    from torchrl_ext import EventIndex, ShardWriter
    from torchrl_ext.synthetic import make_episode

    kills = {2: [(3, "kill_entity:skeleton", 2.0)], 5: [(6, "kill_entity:zombie", 5.0)]}
    with ShardWriter.create(root, shard_rows=20) as w:
        for e in range(8):
            w.add_episode(make_episode(e, 10, (4,), final=e % 2 == 0), metadata={"Score": 10 * e},
                          events=[(1, "jump", float(e)), *kills.get(e, [])])
    EventIndex.build(root)
    return root


def tree_snapshot(root: str | os.PathLike) -> dict[str, tuple[int, int, int]]:
    """``relative path -> (mode, size, mtime_ns)`` of every file and directory under ``root``."""
    root = Path(root)
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            snap[p.relative_to(root).as_posix()] = (st.st_mode, st.st_size, st.st_mtime_ns)
    st = root.lstat()
    snap["."] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return snap


def built_once(tmp_path_factory: Any, name: str, build: Callable[[Path], Any]) -> Any:
    """``build(directory)`` run once per test run, its value shared by every xdist worker.

    For data the tests only read (a dataset, a source directory): under xdist
    the first worker that asks builds it in a directory of the run's base
    temporary directory (``name``, unique in the run), holding a lock, and
    pickles the value (paths, plain data, storages that pickle by path) beside
    it; the other workers wait for the lock and load the value. Without xdist
    it is built in a new temporary directory of the session.

    Args:
        tmp_path_factory: pytest's ``tmp_path_factory``.
        name: the data's name in the run.
        build: makes the data in the empty directory it is given; returns the value.

    Returns:
        What ``build`` returned (a copy, in the workers that did not build it).
    """
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return build(tmp_path_factory.mktemp(name))
    shared = tmp_path_factory.getbasetemp().parent / "built_once"  # the run's directory, above each worker's
    shared.mkdir(exist_ok=True)
    directory, value = shared / name, shared / f"{name}.pickle"
    with open(shared / f"{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if value.exists():
            # Not a downloaded file: what a worker of this test run pickled.
            return pickle.loads(value.read_bytes())
        shutil.rmtree(directory, ignore_errors=True)  # left by a worker whose build failed
        directory.mkdir()
        result = build(directory)
        value.with_suffix(".partial").write_bytes(pickle.dumps(result))
        os.replace(value.with_suffix(".partial"), value)
        return result


def run_killed(kill_at: int, fn: Callable[..., Any], *args: Any, sigkill: bool = False, group: bool = False,
               hooked: tuple[str, ...] = ("fsync", "rename", "replace"), **kwargs: Any) -> int:
    """Runs ``fn(*args, **kwargs)`` in a forked child stopped at its ``kill_at``-th call of a ``hooked`` function.

    The child is a fork of the test process (torch and the package already
    imported: no interpreter start per trial). It forgets the test process's
    multiprocessing fork server, so code that starts workers from one starts
    its own, as in a fresh interpreter. At the chosen call it ends with
    ``os._exit(KILL_EXIT)`` (no cleanup, no flush of Python buffers) or, with
    ``sigkill``, SIGKILL. With ``group`` the child leads a session of its own
    and the chosen call SIGKILLs that whole process group (the child and every
    process it forked, which inherit the counting calls). Returns the child's
    exit code as ``subprocess`` gives it: 0 when ``fn`` finished first,
    ``KILL_EXIT`` or ``-9`` when stopped, 1 when ``fn`` raised (its traceback
    on stderr).

    Args:
        kill_at: the counted call that stops the child (1 = the first; 0 = none).
        fn: what the child runs.
        *args: ``fn``'s positional arguments.
        sigkill: stop by SIGKILL instead of ``os._exit(KILL_EXIT)``.
        group: SIGKILL the child's whole process group.
        hooked: the ``os`` functions whose calls are counted.
        **kwargs: ``fn``'s keyword arguments.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            if group:
                os.setsid()
            importlib.reload(multiprocessing.forkserver)  # the parent's fork server is not this child's
            calls = [0]

            def hook(real: Callable[..., Any]) -> Callable[..., Any]:
                def wrapped(*a: Any, **k: Any) -> Any:
                    calls[0] += 1
                    if calls[0] == kill_at:
                        if group:
                            os.killpg(os.getpgrp(), signal.SIGKILL)
                        if sigkill:
                            os.kill(os.getpid(), signal.SIGKILL)
                        os._exit(KILL_EXIT)
                    return real(*a, **k)
                return wrapped

            for name in hooked:
                setattr(os, name, hook(getattr(os, name)))
            fn(*args, **kwargs)
            code = 0
        except BaseException:  # noqa: BLE001 - any failure of the child is its exit status 1
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def run_cli(capsys: Any, *argv: str) -> subprocess.CompletedProcess:
    """``torchrl-ext ARGV`` run in this process, with what a shell would see of it.

    Calls :func:`torchrl_ext.cli.main` (no interpreter start, torch already
    imported). Output is read through pytest's ``capsys``; warnings are written
    to stderr as the interpreter of the command would show them, and a
    ``SystemExit`` (``--help``, ``--version``, argparse's usage errors) becomes
    its exit status.

    Args:
        capsys: the test's ``capsys`` fixture; what was captured before is dropped.
        *argv: the command line after ``torchrl-ext``.

    Returns:
        ``returncode``, ``stdout`` and ``stderr`` as ``subprocess.run(..., text=True)`` gives them.
    """
    from torchrl_ext.cli import main

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.showwarning = show
        try:
            code = main(list(argv))
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["torchrl-ext", *argv], code, out, err)


def kill_hook(action: str = "os._exit(17)") -> str:
    """Python source that runs ``action`` at the ``int(sys.argv[2])``-th fsync/rename/replace call.

    Prepended to a child script, it stops the child at a chosen stage of a commit:
    ``os._exit(17)`` (no cleanup) or ``os.kill(os.getpid(), 9)`` (SIGKILL).
    """
    return f"""
import os, sys
kill_at = int(sys.argv[2]); calls = [0]
def hook(real):
    def wrapped(*a, **k):
        calls[0] += 1
        if calls[0] == kill_at:
            {action}
        return real(*a, **k)
    return wrapped
os.fsync, os.rename, os.replace = hook(os.fsync), hook(os.rename), hook(os.replace)
"""


def assert_same_datasets(a: str | os.PathLike, b: str | os.PathLike) -> None:
    """Two datasets hold the same rows, episodes and episode metadata."""
    from torchrl_ext import ShardedStorage

    sa, sb = ShardedStorage(a), ShardedStorage(b)
    assert len(sa) == len(sb) and sa.num_episodes == sb.num_episodes
    assert (sa[:] == sb[:]).all()
    ta, tb = sa.episode_table(), sb.episode_table()
    try:
        assert [ta.metadata(e) for e in range(sa.num_episodes)] == [tb.metadata(e) for e in range(sb.num_episodes)]
    finally:
        ta.close()
        tb.close()
