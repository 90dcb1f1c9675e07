"""Episodes found in a timeline of checkpoints, from their small columns alone.

:class:`EpisodeParser` walks the spans in time order with Dopamine's writer
rules (``stack_size - 1`` zero transitions before every episode, an episode
ends at a terminal transition) and returns, for each span, the
:class:`EpisodePart` pieces of the episodes it holds. Observations are not
needed to find episodes, so the converter knows, before it reads a single
frame of a checkpoint, which rows go to which episode.

A gap between spans (a lap that was never logged) cuts the open episode
(``truncated``); after a gap, and at the start of a selection that does not
begin at transition 0, transitions are skipped up to the next terminal one
because an episode's start cannot be told from padding without context.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ...format import FormatError
from .logs import column_file
from .timeline import SmallColumns, Span

__all__ = ["EpisodeParser", "EpisodePart", "EpisodePlan", "ParserState", "SpanEpisodes"]

logger = logging.getLogger(__name__)


@dataclass
class EpisodePart:
    """Time positions ``p0 .. p1 - 1`` of ``span`` (transitions ``span.lo + p``) of one episode."""

    span: Span
    p0: int
    p1: int
    action: np.ndarray = field(repr=False)
    reward: np.ndarray = field(repr=False)
    frames: np.ndarray | None = field(default=None, repr=False)

    @property
    def length(self) -> int:
        return self.p1 - self.p0


@dataclass
class EpisodePlan:
    """One episode: where its steps are, whether it ended on a terminal transition."""

    first: int  # transition number of step 0
    checkpoint: int  # checkpoint index of step 0
    parts: list[EpisodePart] = field(default_factory=list)
    closed: bool = False
    terminated: bool = False
    seq: int = -1  # position in the output, once closed

    @property
    def length(self) -> int:
        return sum(p.length for p in self.parts)


@dataclass
class ParserState:
    """What the parser carries from one span to the next."""

    pad: int = 0  # padding transitions still expected before the next episode
    contextless: bool = True  # skip up to the next terminal: episode start unknown
    next_global: int = 0  # first transition not consumed yet
    open: EpisodePlan | None = None

    def clone(self) -> ParserState:
        return copy.deepcopy(self)


@dataclass
class SpanEpisodes:
    """What one span contributes: a plan cut before it, its parts, the plans it closes."""

    span: Span
    cut: EpisodePlan | None  # closed (truncated) at a gap before this span
    parts: list[tuple[EpisodePlan, EpisodePart]]
    closed: list[EpisodePlan]  # terminated inside this span, in time order
    dropped: int  # transitions skipped for lack of context


class EpisodeParser:
    """Finds episodes span by span; keeps :class:`ParserState` between calls.

    Args:
        stack_size: the writer's frame stack (``stack_size - 1`` padding transitions).
        state: where an earlier parser stopped.
        describe: how errors name a file of the logs (``ReplayLogs.describe``).
    """

    def __init__(self, stack_size: int, state: ParserState | None = None, *,
                 describe: Callable[[str], str] = str) -> None:
        if isinstance(stack_size, bool) or not isinstance(stack_size, int) or stack_size < 1:
            raise ValueError(f"`stack_size` must be a positive int, got {stack_size!r}")
        self.stack = stack_size
        self.state = state or ParserState()
        self.describe = describe

    def cut(self) -> EpisodePlan | None:
        """Closes the open episode as truncated (a gap or the end of the data); returns it."""
        st = self.state
        plan, st.open = st.open, None
        st.contextless, st.pad = True, 0
        if plan is not None:
            plan.closed = True
        return plan

    def feed(self, span: Span, cols: SmallColumns) -> SpanEpisodes:
        """Parses ``span`` given its small columns in time order (``cols.action[p]`` is transition ``lo + p``)."""
        st = self.state
        cut = None
        if span.lo > st.next_global:
            if st.next_global:
                logger.warning("checkpoint %d starts at transition %d, %d transitions were never logged",
                               span.index, span.lo, span.lo - st.next_global)
            cut = self.cut()
        p = max(st.next_global - span.lo, 0)
        if span.lo == 0 and p == 0:
            st.contextless, st.pad = False, self.stack - 1
        w = span.stop - span.lo
        term = np.flatnonzero(cols.terminal[p:]) + p
        ti, dropped = 0, 0
        parts: list[tuple[EpisodePlan, EpisodePart]] = []
        closed: list[EpisodePlan] = []
        while p < w:
            while ti < len(term) and term[ti] < p:
                ti += 1
            if st.contextless:
                if ti == len(term):
                    dropped += w - p
                    p = w
                    break
                dropped += int(term[ti]) + 1 - p
                p, st.contextless, st.pad = int(term[ti]) + 1, False, self.stack - 1
                continue
            if st.pad:
                k = min(st.pad, w - p)
                busy = [key for key in ("terminal", "action", "reward") if getattr(cols, key)[p:p + k].any()]
                if busy:
                    raise FormatError(
                        f"{self.describe(column_file(busy[0], span.index))}: transitions {span.lo + p}.."
                        f"{span.lo + p + k - 1} should be zero padding before an episode start, found non-zero "
                        f"{'/'.join(busy)} values; is stack_size={self.stack} right?"
                    )
                p += k
                st.pad -= k
                continue
            e = w if ti == len(term) else int(term[ti]) + 1
            if st.open is None:
                st.open = EpisodePlan(first=span.lo + p, checkpoint=span.index)
            part = EpisodePart(span, p, e, cols.action[p:e].copy(), cols.reward[p:e].copy())
            st.open.parts.append(part)
            parts.append((st.open, part))
            if ti < len(term):
                st.open.closed = st.open.terminated = True
                closed.append(st.open)
                st.open, st.pad = None, self.stack - 1
            p = e
        st.next_global = span.stop
        return SpanEpisodes(span, cut, parts, closed, dropped)
