"""Worker processes end when the process that started them dies.

A worker forked by ``preprocess``, ``generate`` or a converter inherits the
parent's open files, the dataset lock among them. If the parent is killed
(``kill -9``, the OOM killer) and its workers lived on, the lock would stay
held and a rerun would be refused. :func:`exit_with_parent`, called first in
every worker, asks Linux to SIGKILL the worker when its parent dies
(``prctl(PR_SET_PDEATHSIG)``); elsewhere a daemon thread polls the parent pid.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

__all__ = ["exit_with_parent"]

_PR_SET_PDEATHSIG = 1


def _watch(parent: int, interval: float) -> None:
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(1)


def exit_with_parent(interval: float = 0.5) -> None:
    """Makes this process exit as soon as its parent dies (call it at the start of a worker)."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before prctl took effect
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass
    threading.Thread(target=_watch, args=(parent, interval), daemon=True, name="parent-watch").start()
