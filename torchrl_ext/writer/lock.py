"""The one-writer-per-dataset lock: ``<root>/.writer.lock``, an ``flock`` plus the owner's pid.

The lock is the kernel's ``flock``, so it is released when the owner's file
descriptor closes, including when the owner dies. The file also records the
owner's pid and process start time, so a busy lock names its holder; worker
processes that inherited the descriptor keep the lock while they live, and the
message says so. The file is removed when the lock is released.

The file is created with ``O_CREAT|O_EXCL``, or, when a lock file is already
there (left by an owner that died), opened with ``O_NOFOLLOW``; it must be a
regular file with one link. A symlink, hard link, FIFO or directory planted
under the name is refused (``FormatError``) before anything is written, so
taking the lock never truncates or writes another file.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
from pathlib import Path

from ..format import FormatError, current_umask
from ..format.files import loads_json

__all__ = ["LOCK_NAME", "lock_dataset", "unlock_dataset", "lock_owner"]

LOCK_NAME = ".writer.lock"
MAX_LOCK_BYTES = 4096  # the owner record is ~40 bytes
_FLAGS = (os.O_RDWR | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
          | getattr(os, "O_NONBLOCK", 0))
# errors of opening a symlink with O_NOFOLLOW (ELOOP; EMLINK on BSD), a directory, a FIFO or socket
_REFUSED = {errno.ELOOP, errno.EMLINK, errno.EISDIR, errno.ENXIO, errno.EOPNOTSUPP}


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _planted(path: Path, found: str) -> FormatError:
    return FormatError(
        f"{path}: the writer lock is {found}, not the regular file this library creates; nothing was "
        f"written through it; remove it (`rm {path}`) and retry"
    )


def _found(path: Path) -> str:
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return "not a regular file"
    if stat.S_ISLNK(mode):
        return f"a symbolic link (to {os.readlink(path)!r})"
    return "a directory" if stat.S_ISDIR(mode) else "not a regular file"


def _open_lock(path: Path) -> int | None:
    """A descriptor of the lock file, created or the regular file already there; None if it vanished."""
    try:
        fd = os.open(path, _FLAGS | os.O_CREAT | os.O_EXCL, 0o666 & ~current_umask())
    except FileExistsError:
        try:
            fd = os.open(path, _FLAGS)
        except FileNotFoundError:
            return None  # its owner removed it just now
        except OSError as err:
            if err.errno in _REFUSED:
                raise _planted(path, _found(path)) from err
            raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _planted(path, "a FIFO" if stat.S_ISFIFO(st.st_mode) else "not a regular file")
        if st.st_nlink > 1:
            raise _planted(path, f"a hard link shared with another file ({st.st_nlink} links)")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def lock_owner(root: str | os.PathLike) -> dict | None:
    """The ``{"pid", "start"}`` recorded by the lock's last owner, or None."""
    try:
        fd = os.open(Path(root) / LOCK_NAME, os.O_RDONLY | (_FLAGS & ~os.O_RDWR))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        owner = loads_json(os.pread(fd, MAX_LOCK_BYTES, 0).decode("utf-8"))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
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
    """Takes the exclusive writer lock of a dataset directory; ``busy`` starts the error text.

    Raises:
        RuntimeError: another process holds the lock.
        FormatError: something other than a lock file (a symlink, a hard
            link, a FIFO, a directory) is planted at ``<root>/.writer.lock``.
    """
    root = Path(root)
    path = root / LOCK_NAME
    while True:
        fd = _open_lock(path)
        if fd is None:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RuntimeError(f"{root}: {busy} ({_describe(root)})") from None
        try:
            same = os.lstat(path).st_ino == os.fstat(fd).st_ino
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
