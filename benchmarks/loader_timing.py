"""Windows/s of a DataLoader, timed the same way for every loader (imports nothing beyond the standard library).

Both sides of the MineStudio comparison use it, ours in this project's venv and
MineStudio's in its own, so the two numbers come from one timing loop.
"""

from __future__ import annotations

import time
from typing import Any


def time_batches(loader: Any, batches: int) -> dict[str, Any]:
    """Times ``batches`` batches after one warm-up batch (workers started, first batch out).

    Returns:
        ``{"windows", "seconds", "windows_per_s", "items", "shape"}`` with the
        items of the dataset and the shape of the last batch's ``image``.
    """
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    n = 0
    batch = None
    for _ in range(batches):
        batch = next(it)
        n += batch["image"].shape[0]
    dt = time.perf_counter() - t0
    return {"windows": n, "seconds": dt, "windows_per_s": n / dt, "items": len(loader.dataset),
            "shape": list(batch["image"].shape) if batch is not None else []}
