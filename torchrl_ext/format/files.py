"""Durable file operations: atomic replacement, directory fsync, paths that stay inside a root.

Every file the library writes goes through :func:`atomic_write_bytes` (or is
created inside a temporary directory that :func:`commit_dir` renames into
place), so a reader sees the old content or the new one, never a mix. New
files get the permissions ``0o666 & ~umask``, like files made with ``open()``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import FormatError

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "commit_dir",
    "fsync_dir",
    "current_umask",
    "resolve_inside",
]


def current_umask() -> int:
    """The process umask (reading it requires setting it; restored at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(path: str | os.PathLike) -> None:
    """Makes a rename or a new entry in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replaces ``path`` with ``data``: temp file, fsync, rename, fsync of the directory."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = None) -> None:
    """:func:`atomic_write_bytes` of ``obj`` as UTF-8 JSON."""
    atomic_write_bytes(path, json.dumps(obj, indent=indent).encode("utf-8"))


def commit_dir(tmp: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Renames a fully written directory into place (``dest`` must not exist) and fsyncs its parent."""
    dest = Path(dest)
    os.rename(tmp, dest)
    fsync_dir(dest.parent)


def resolve_inside(root: str | os.PathLike, rel: str, where: str) -> Path:
    """``root / rel`` with symlinks resolved; refuses a path that resolves outside ``root``.

    Lexical checks (no ``..``, not absolute) happen when the manifest is read;
    this catches a shard directory or table that is a symlink to elsewhere.
    """
    root_real = Path(os.path.realpath(root))
    path = Path(os.path.realpath(Path(root) / rel))
    if path != root_real and root_real not in path.parents:
        raise FormatError(
            f"{where}: {rel!r} resolves to {path}, outside the dataset {root_real}; copy the data "
            "into the dataset directory instead of linking to it"
        )
    return path
