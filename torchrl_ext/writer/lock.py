"""The one-writer-per-dataset lock: ``<root>/.writer.lock``, an ``flock`` plus the owner's pid.

The lock is the kernel's ``flock``, so it is released when the owner's file
descriptor closes, including when the owner dies. The file also records the
owner's pid and process start time, so a busy lock names its holder; worker
processes that inherited the descriptor keep the lock while they live, and the
message says so. The file is removed when the lock is released.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from ..format import current_umask

__all__ = ["LOCK_NAME", "lock_dataset", "unlock_dataset", "lock_owner"]

LOCK_NAME = ".writer.lock"


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def lock_owner(root: str | os.PathLike) -> dict | None:
    """The ``{"pid", "start"}`` recorded by the lock's last owner, or None."""
    try:
        owner = json.loads((Path(root) / LOCK_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def _describe(root: Path) -> str:
    owner = lock_owner(root)
    if not owner or not isinstance(owner.get("pid"), int):
        return "its owner is unknown"
    pid = owner["pid"]
    if _start_time(pid) is not None and _start_time(pid) == owner.get("start"):
        return f"process {pid} holds it"
    return (f"its owner, process {pid}, has exited, but a process it started (a worker) still holds "
            f"the lock: find it with `fuser {root / LOCK_NAME}` and stop it")


def lock_dataset(root: str | os.PathLike, busy: str) -> int:
    """Takes the exclusive writer lock of a dataset directory; ``busy`` starts the error text."""
    root = Path(root)
    path = root / LOCK_NAME
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o666 & ~current_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RuntimeError(f"{root}: {busy} ({_describe(root)})") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:  # else the previous owner removed the file between our open and flock
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "start": _start_time(os.getpid())}).encode(), 0)
    return fd


def unlock_dataset(root: str | os.PathLike, fd: int) -> None:
    """Removes the lock file and releases the lock taken by :func:`lock_dataset`."""
    try:
        os.unlink(Path(root) / LOCK_NAME)
    except FileNotFoundError:
        pass
    os.close(fd)
