"""Hostile-input assertions shared by tests: refused with a `FormatError`, quickly, without allocating."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable

import pytest

from torchrl_ext import FormatError

MAX_SECONDS = 10.0  # generous: the machine may be busy; a refusal takes milliseconds
MAX_PEAK_BYTES = 32 << 20


def assert_refused(fn: Callable[[], object], match: str, *, max_peak: int = MAX_PEAK_BYTES) -> FormatError:
    """Runs ``fn``, expecting one `FormatError` matching ``match``, within time and traced-memory bounds."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(FormatError, match=match) as info:
            fn()
    finally:
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert "\n" not in str(info.value)
    assert elapsed < MAX_SECONDS, f"refusal took {elapsed:.1f} s"
    assert peak < max_peak, f"refusal allocated {peak} bytes at its peak"
    return info.value
