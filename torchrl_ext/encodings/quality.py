"""Quality of lossy encodings."""

from __future__ import annotations

import numpy as np

__all__ = ["psnr"]


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB between two arrays of the same shape (``inf`` when equal).

    >>> a = np.zeros((2, 4), np.uint8)
    >>> psnr(a, a)
    inf
    >>> round(psnr(a, a + 1), 2)
    48.13
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"`a` and `b` must have the same shape, got {a.shape} and {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)) if a.size else 0.0
    return float("inf") if mse == 0 else float(10 * np.log10(peak**2 / mse))
