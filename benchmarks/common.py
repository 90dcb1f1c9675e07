"""Timing and reporting shared by the benchmark runners."""

from __future__ import annotations

import statistics
import time
from pathlib import Path


def timeit(fn, iters: int, repeats: int = 5) -> float:
    """Median over ``repeats`` of the mean seconds per call over ``iters`` calls (one warm-up call)."""
    fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        out.append((time.perf_counter() - t0) / iters)
    return statistics.median(out)


def identity_collate(x):
    """The collate TorchRL's Atari dataset class passes for its storage."""
    return x


def write_results(out: str | Path, lines: list[str]) -> str:
    """Writes a results table to ``out``, prints it and returns its text."""
    text = "\n".join(lines)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text)
    print(text)
    return text
