"""Hostile files planted in a dataset or an import source: symlinks to elsewhere, FIFOs; a guard against hangs."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

OUTSIDE = r"resolves to .* outside the dataset .*; copy the data into the dataset directory"
NOT_REGULAR = r"expected a regular file, found a FIFO \(named pipe\)"


def plant_symlink(path: Path, outside: Path) -> bytes:
    """Moves the bytes of ``path`` to the file ``outside`` and makes ``path`` a symlink to it; returns the bytes.

    The link points at a file of the right content and size, so only the
    containment rule can refuse it.
    """
    data = path.read_bytes()
    outside.parent.mkdir(parents=True, exist_ok=True)
    outside.write_bytes(data)
    path.unlink()
    path.symlink_to(outside)
    return data


def plant_fifo(path: Path) -> Path:
    """Replaces ``path`` (if any) with a FIFO of the same name; a reader that opens it would wait for a writer."""
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    return path


def _release(fifos: Sequence[Path]) -> None:
    for fifo in fifos:  # a reader blocked in open() returns once a writer opens, then reads EOF
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass


def call_within(seconds: float, fn: Callable[[], Any], fifos: Sequence[Path] = ()) -> tuple[Any, float]:
    """Runs ``fn`` on a thread; returns ``(its result or the exception it raised, elapsed seconds)``.

    Fails the test when ``fn`` is still running after ``seconds`` (it hangs);
    ``fifos`` are then opened for writing so that a reader blocked on one returns.
    """
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed to the test
            out["value"] = err

    t0 = time.perf_counter()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    elapsed = time.perf_counter() - t0
    if thread.is_alive():
        _release(fifos)
        thread.join(5)
        pytest.fail(f"still running after {seconds} s: a FIFO (or another non-regular file) was waited on")
    return out["value"], elapsed
