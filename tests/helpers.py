"""Helpers shared by several test modules (``tests`` is on ``sys.path``)."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torchrl_ext.format import read_event_log, read_manifest

__all__ = ["read_events", "tree_snapshot", "kill_hook", "run_killed", "KILL_EXIT"]

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


def run_killed(kill_at: int, fn: Callable[..., Any], *args: Any, sigkill: bool = False, **kwargs: Any) -> int:
    """Runs ``fn(*args, **kwargs)`` in a forked child stopped at its ``kill_at``-th fsync/rename/replace call.

    The child is a fork of the test process (torch and the package already
    imported: no interpreter start per trial). At the chosen call it ends with
    ``os._exit(KILL_EXIT)`` (no cleanup, no flush of Python buffers) or, with
    ``sigkill``, SIGKILL. Returns the child's exit code as ``subprocess`` gives
    it: 0 when ``fn`` finished first, ``KILL_EXIT`` or ``-9`` when stopped, 1
    when ``fn`` raised (its traceback on stderr).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            calls = [0]

            def hook(real: Callable[..., Any]) -> Callable[..., Any]:
                def wrapped(*a: Any, **k: Any) -> Any:
                    calls[0] += 1
                    if calls[0] == kill_at:
                        if sigkill:
                            os.kill(os.getpid(), 9)
                        os._exit(KILL_EXIT)
                    return real(*a, **k)
                return wrapped

            os.fsync, os.rename, os.replace = hook(os.fsync), hook(os.rename), hook(os.replace)
            fn(*args, **kwargs)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


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
