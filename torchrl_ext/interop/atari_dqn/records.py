"""What each file of a checkpoint must hold, checked before anything is allocated.

The expected record of checkpoint ``i`` of a run of capacity ``C`` (the
layout is in the package docstring):

=========================  ===================  ===================================================
file                       dtype and shape      bounds
=========================  ===================  ===================================================
``$store$_terminal``       uint8 ``[C]``        ``1 <= C <= MAX_CAPACITY``: the run's capacity
``$store$_action``         int32 ``[C]``        the ``C`` of the run's first terminal column
``$store$_reward``         float32 ``[C]``      the same ``C``
``$store$_observation``    uint8 ``[C, H, W]``  ``1 <= H * W <= MAX_FRAME_BYTES``, the same frames in
                                                every checkpoint
``add_count``              integer scalar       ``0 <= n <= MAX_ADD_COUNT``
``invalid_range``          integers ``[k]``     ``1 <= k <= MAX_INVALID_RANGE`` consecutive rows (mod
                                                ``C``) in ``[0, C)``
=========================  ===================  ===================================================

Each reader hands the npy reader the expected dtype, number of dimensions
and the record's size in bytes as ``max_bytes``, and the listing's size of
the file when the stream cannot tell it (a bucket), so a header promising
more than the record, or more than the compressed file can hold, is refused
before a byte is allocated. The bounds keep every number the converter
derives (transition numbers, rows, buffer sizes) well inside int64. Every
refusal is one :class:`~torchrl_ext.format.FormatError` line naming the file.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from ...format import FormatError
from ...sources.npy_stream import NpyGzReader, load_npy_gz
from .logs import ReplayLogs, column_file

__all__ = [
    "MAX_ADD_COUNT",
    "MAX_CAPACITY",
    "MAX_FRAME_BYTES",
    "MAX_INVALID_RANGE",
    "SMALL",
    "load_column",
    "observation_reader",
    "read_add_count",
    "read_capacity",
    "read_invalid_range",
]

MAX_CAPACITY = 100_000_000  # 100 times the published buffers
MAX_FRAME_BYTES = 1 << 20  # Atari's 84 x 84 frames are 7 KiB
MAX_ADD_COUNT = 1 << 62  # int64, with room for the timeline's arithmetic
MAX_INVALID_RANGE = 1024  # Dopamine writes stack_size + update_horizon rows
SMALL = {"action": np.int32, "reward": np.float32, "terminal": np.uint8}
_REFETCH = "download the checkpoint again"


@contextmanager
def _reader(logs: ReplayLogs, name: str, **expected: Any) -> Iterator[NpyGzReader]:
    with logs.open(name) as f, NpyGzReader(f, name=logs.describe(name), compressed_bytes=logs.size(name),
                                           **expected) as reader:
        yield reader


def _load(logs: ReplayLogs, name: str, **expected: Any) -> np.ndarray:
    with logs.open(name) as f:
        return load_npy_gz(f, name=logs.describe(name), compressed_bytes=logs.size(name), **expected)


def read_capacity(logs: ReplayLogs, index: int) -> int:
    """Rows of checkpoint ``index`` (the length of its terminal column), within ``1 .. MAX_CAPACITY``."""
    name = column_file("terminal", index)
    with _reader(logs, name, dtype=np.uint8, ndim=1, max_bytes=MAX_CAPACITY) as r:
        capacity = r.header.shape[0]
    if capacity < 1:
        raise FormatError(f"{logs.describe(name)}: holds 0 rows, expected a replay buffer of 1 to {MAX_CAPACITY} "
                          f"rows; {_REFETCH}")
    return capacity


def read_add_count(logs: ReplayLogs, index: int) -> int:
    """The add count stored for checkpoint ``index``: an integer in ``0 .. MAX_ADD_COUNT``."""
    name = column_file("add_count", index)
    value = _load(logs, name, ndim=0, max_bytes=16)
    if value.dtype.kind not in "iu" or not 0 <= int(value) <= MAX_ADD_COUNT:
        raise FormatError(f"{logs.describe(name)}: expected an integer scalar in 0..{MAX_ADD_COUNT}, found "
                          f"{value.dtype} {value.item()!r}; {_REFETCH}")
    return int(value)


def load_column(logs: ReplayLogs, index: int, key: str, capacity: int) -> np.ndarray:
    """Small column ``key`` (``action``, ``reward``, ``terminal``) of checkpoint ``index``: ``capacity`` rows."""
    name = column_file(key, index)
    dtype = np.dtype(SMALL[key])
    column = _load(logs, name, dtype=dtype, ndim=1, max_bytes=capacity * dtype.itemsize)
    if column.shape[0] != capacity:
        raise FormatError(f"{logs.describe(name)}: {column.shape[0]} rows, expected {capacity}, the run's "
                          f"capacity (its first terminal column): checkpoint {index} columns have different "
                          f"lengths; {_REFETCH}")
    return column


def read_invalid_range(logs: ReplayLogs, index: int, capacity: int) -> np.ndarray:
    """The ``invalid_range`` of checkpoint ``index``: consecutive rows (mod ``capacity``), validated only."""
    name = column_file("invalid_range", index)
    rows = _load(logs, name, ndim=1, max_bytes=MAX_INVALID_RANGE * 8)
    plausible = (rows.dtype.kind in "iu" and 1 <= rows.size <= MAX_INVALID_RANGE
                 and int(rows.min()) >= 0 and int(rows.max()) < capacity)
    if plausible:
        wide = rows.astype(np.int64)
        plausible = bool(np.all((wide[1:] - wide[:-1]) % capacity == 1 % capacity))
    if not plausible:
        shown = np.array2string(rows, threshold=8, max_line_width=1 << 30)  # one line
        raise FormatError(f"{logs.describe(name)}: expected 1 to {MAX_INVALID_RANGE} consecutive row indices "
                          f"in [0, {capacity}), found {rows.dtype} {shown}; {_REFETCH}")
    return rows


@contextmanager
def observation_reader(logs: ReplayLogs, index: int, capacity: int,
                       frame_shape: tuple[int, ...] | None = None) -> Iterator[NpyGzReader]:
    """The observation file of checkpoint ``index``, its header checked: ``[capacity, *frame_shape]`` uint8.

    ``frame_shape`` is that of the run's earlier checkpoints (``None`` for the first).
    """
    name = column_file("observation", index)
    with _reader(logs, name, dtype=np.uint8, ndim=3, max_bytes=capacity * MAX_FRAME_BYTES, threaded=True) as r:
        shape = r.header.shape
        where = logs.describe(name)
        if shape[0] != capacity:
            raise FormatError(f"{where}: {shape[0]} frames, expected {capacity}, the run's capacity: checkpoint "
                              f"{index} columns have different lengths; {_REFETCH}")
        if not 0 < math.prod(shape[1:]) <= MAX_FRAME_BYTES:
            raise FormatError(f"{where}: frames of shape {shape[1:]}, expected 1 to {MAX_FRAME_BYTES} bytes "
                              f"(Atari's are 84 x 84); {_REFETCH}")
        if frame_shape is not None and shape[1:] != frame_shape:
            raise FormatError(f"{where}: frames of shape {shape[1:]}, earlier checkpoints have {frame_shape}")
        yield r
