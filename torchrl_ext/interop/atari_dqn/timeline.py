"""A run's checkpoints placed on one timeline of transition numbers.

Transition ``g`` (padding included) lives at row ``g % C`` of every checkpoint
logged while it was in the buffer. A checkpoint logged with ``add_count = N``
holds transitions ``max(0, N - C) .. N - 1``: its :class:`Span`. Regular logs
store the running total ``N``; batch_rl's ``log_final_buffer`` stores the
cursor ``N % C`` instead, so a run's last file may store a number that is not
larger than the previous checkpoint's. That file is placed after the previous
checkpoint (``prev``, ending at transition ``P``): its add count is the
smallest ``A >= P`` with ``A % C`` equal to the stored cursor when the rows it
shares with ``prev`` (transitions ``A - C .. P - 1``, stale copies) are equal
in both files; ``A == P`` is a final log written right after a regular one
(nothing new). When those rows differ, laps were never logged between the two
(padding jumped over the log point, or files are missing): ``A`` is taken one
lap later (or as many laps as checkpoint indices are missing), a lower bound,
and the converter cuts the episode running into the gap as usual.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ...format import FormatError
from .logs import ReplayLogs, column_file
from .records import (
    SMALL,
    load_column,
    read_add_count,
    read_capacity,
    read_invalid_range,
)

__all__ = ["SmallColumns", "Span", "build_timeline", "load_small_columns"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Span:
    """Transitions ``lo .. stop - 1`` held by checkpoint ``index`` (capacity ``capacity``)."""

    index: int
    capacity: int
    stored: int  # the add count as stored in the file
    lo: int
    stop: int
    final: bool = False  # batch_rl's final log (stored the cursor)

    def rows(self, g0: int, g1: int) -> list[tuple[int, int, int]]:
        """``(row0, row1, offset)`` intervals holding transitions ``g0 .. g1 - 1`` (offset from ``g0``)."""
        c, out, g = self.capacity, [], g0
        while g < g1:
            r = g % c
            n = min(g1 - g, c - r)
            out.append((r, r + n, g - g0))
            g += n
        return out


@dataclass
class SmallColumns:
    """The action, reward and terminal columns of one checkpoint, in row order."""

    action: np.ndarray
    reward: np.ndarray
    terminal: np.ndarray

    def take(self, rows: np.ndarray) -> SmallColumns:
        return SmallColumns(self.action[rows], self.reward[rows], self.terminal[rows])

    def time_ordered(self, span: Span) -> SmallColumns:
        """Rows of ``span.lo .. span.stop - 1`` in time order."""
        return self.take(np.arange(span.lo, span.stop, dtype=np.int64) % span.capacity)


def load_small_columns(logs: ReplayLogs, index: int, capacity: int) -> SmallColumns:
    """Loads and checks the small columns of checkpoint ``index`` (and its ``invalid_range``)."""
    cols = {key: load_column(logs, index, key, capacity) for key in SMALL}
    read_invalid_range(logs, index, capacity)
    return SmallColumns(**cols)


def _same_rows(a: SmallColumns, b: SmallColumns, rows: np.ndarray) -> bool:
    return all(np.array_equal(getattr(a, k)[rows], getattr(b, k)[rows]) for k in SMALL)


def _final_span(logs: ReplayLogs, prev: Span, index: int, cursor: int) -> Span:
    c = prev.capacity
    if cursor >= c:
        raise FormatError(
            f"{logs.describe(column_file('add_count', index))}: stores add_count {cursor}, not more than "
            f"checkpoint {prev.index}'s {prev.stored} and not a cursor below the capacity {c}; "
            f"leave checkpoint {index} out with `checkpoints=`"
        )
    first = prev.stop + (cursor - prev.stop) % c  # smallest A >= P with A % C == cursor
    a, b = load_small_columns(logs, prev.index, c), load_small_columns(logs, index, c)
    stale = np.arange(max(0, first - c, prev.lo), prev.stop, dtype=np.int64) % c
    if _same_rows(a, b, stale):
        add_count = first
    else:
        laps = max(1, index - prev.index - 1)
        add_count = first + laps * c
        logger.warning(
            "%s: checkpoint %d (final log, cursor %d) does not continue checkpoint %d; at least %d lap(s) "
            "of %d transitions were never logged, numbering its transitions from %d",
            logs.where, index, cursor, prev.index, laps, c, add_count - c)
    if add_count == prev.stop:
        logger.info("%s: checkpoint %d repeats checkpoint %d (final log right after a regular one)",
                    logs.where, index, prev.index)
    return Span(index, c, cursor, max(0, add_count - c), add_count, final=True)


def build_timeline(logs: ReplayLogs, indices: list[int]) -> list[Span]:
    """The spans of checkpoints ``indices`` (all of a run's checkpoints, sorted) in time order.

    Raises:
        FormatError: add counts that fit no reading (decreasing before the last file,
            a final cursor at or above the capacity), or a file that is not its record
            (:mod:`.records`).
    """
    capacity = read_capacity(logs, indices[0])
    spans: list[Span] = []
    for k, index in enumerate(indices):
        n = read_add_count(logs, index)
        if not spans or n > spans[-1].stop:
            spans.append(Span(index, capacity, n, max(0, n - capacity), n))
        elif k == len(indices) - 1:
            spans.append(_final_span(logs, spans[-1], index, n))
        else:
            raise FormatError(
                f"{logs.describe(column_file('add_count', index))}: stores add_count {n}, not more than "
                f"checkpoint {spans[-1].index}'s {spans[-1].stored}; only a run's last file (batch_rl's final "
                f"log) may; leave checkpoint {index} out with `checkpoints=`"
            )
    return spans
