"""Helpers shared by several test modules (``tests`` is on ``sys.path``)."""

from __future__ import annotations

import os
from pathlib import Path

from torchrl_ext.format import read_event_log, read_manifest

__all__ = ["read_events", "tree_snapshot"]


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
