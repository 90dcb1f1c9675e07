"""One pass from replay logs to a sharded dataset: every frame decompressed once, written once.

For each checkpoint in time order: its small columns are loaded (9 bytes per
row) and parsed into episodes (:mod:`.episodes`); then its observation file
is decompressed front to back (in a background thread) and each frame is
read straight into the buffer of the episode it belongs to, or skipped
(padding, stale rows, transitions without context). An episode is handed to
:class:`~torchrl_ext.ShardWriter` as soon as its last frame has been read, and
its buffers are freed. Memory holds the frames of the episodes still open:
the one crossing into the next checkpoint, and the one holding the
checkpoint's first transition, which is stored in its last row (``C - 1``)
and so arrives last. That is also the output order: episodes in the order
their last frame arrives, which is time order except that the episode
holding a checkpoint's row ``C - 1`` follows that checkpoint's other
episodes. ``first_index`` (and ``checkpoint``) in the episode table give the
chronological order.

Resuming: the order is a function of the logs alone, so a dataset holding
``M`` committed episodes holds the first ``M`` of that order. The small
columns are parsed from the start without reading observations until the
first uncommitted episode; observation files are read again only from the
checkpoint where it (or the episode open at its checkpoint's start) begins.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ...encodings import resolve_encoding
from ...format import atomic_write_json, read_manifest
from ...progress import ProgressBar
from ...validation import user_path
from ...writer import EpisodeTable, ShardWriter
from .checkpoint_files import RECORDS_KEY, checkpoint_records, conversion_record
from .dictionary_rows import spread_frames
from .episodes import EpisodeParser, EpisodePlan, ParserState, SpanEpisodes
from .logs import LocalReplayLogs, ReplayLogs
from .records import observation_reader
from .timeline import Span, build_timeline, load_small_columns

__all__ = ["CONVERTER_VERSION", "DEFAULT_ENCODINGS", "DONE_NAME", "convert_replay_logs"]

logger = logging.getLogger(__name__)

DONE_NAME = "atari_dqn.json"
CONVERTER_VERSION = 2
# Per-frame zstd with a trained dictionary: uniform random rows decode one small chunk each.
DEFAULT_ENCODINGS: dict[str, Any] = {"observation": {"name": "zstd", "chunk_rows": 1, "dictionary": True}}
Progress = Callable[[int, int], None]


class _FrameCount:
    """Frames of the observation files read or skipped so far, reported as ``(done, total)``.

    Every checkpoint counts its whole file (``capacity`` frames) whether its
    frames are needed or not, so a conversion that completes reports
    ``done == total``; a resumed one starts at the checkpoints it does not read
    again. Reports are spaced to about a thousandth of the total.
    """

    def __init__(self, report: Progress | None, spans: list[Span], start: int) -> None:
        self.report = report
        self.total = sum(span.capacity for span in spans)
        self.done = sum(span.capacity for span in spans[:start])
        self._step = max(1, self.total // 1000)
        self._sent = self.done
        if report is not None:
            report(self.done, self.total)

    def add(self, frames: int) -> None:
        self.done += frames
        if self.report is not None and self.done != self._sent and (
                self.done - self._sent >= self._step or self.done == self.total):
            self.report(self.done, self.total)
            self._sent = self.done


def _episode_td(plan: EpisodePlan) -> tuple[dict[str, Any], np.ndarray]:
    frames = [p.frames for p in plan.parts]
    if any(f is None for f in frames):
        raise RuntimeError(f"episode at transition {plan.first}: frames were not read; this is a bug")
    obs = frames[0] if len(frames) == 1 else np.concatenate(frames)
    action = np.concatenate([p.action for p in plan.parts]).astype(np.int32, copy=False)
    reward = np.concatenate([p.reward for p in plan.parts]).astype(np.float32, copy=False)
    done = np.zeros((len(action), 1), dtype=bool)
    done[-1] = True
    term = done if plan.terminated else np.zeros_like(done)
    trunc = np.zeros_like(done) if plan.terminated else done
    td = {"observation": obs, "action": action,
          "next": {"reward": reward[:, None], "done": done, "terminated": term.copy(), "truncated": trunc}}
    return td, reward


class _Conversion:
    def __init__(self, logs: ReplayLogs, writer: ShardWriter, spans: list[Span], stack: int, game: str,
                 run: int, committed: int, last: dict[str, Any] | None) -> None:
        self.logs, self.writer, self.spans, self.stack = logs, writer, spans, stack
        self.game, self.run = game, run
        self.committed, self.last = committed, last
        self.seq = 0
        self.dropped = 0
        self.obs_shape: tuple[int, ...] | None = None
        self.frames = _FrameCount(None, [], 0)

    # ------------------------------------------------------------------ order
    def _assign(self, plan: EpisodePlan) -> None:
        plan.seq = self.seq
        self.seq += 1
        if plan.seq == self.committed - 1 and self.last is not None:
            got = (int(self.last["first_index"]), int(self.last["length"]))
            if got != (plan.first, plan.length):
                raise ValueError(
                    f"{self.writer.root}: episode {plan.seq} holds transitions {got[0]}..{sum(got) - 1}, the "
                    f"logs at {self.logs.where} give {plan.first}..{plan.first + plan.length - 1}; the dataset "
                    "was converted from other logs, use another root"
                )

    @staticmethod
    def _completion(work: SpanEpisodes) -> list[EpisodePlan]:
        """Plans closed in this span, in the order their last frame is read."""
        span = work.span
        last_part = {id(plan): part for plan, part in work.parts}
        key = {id(p): max(r1 for _, r1, _ in span.rows(span.lo + last_part[id(p)].p0, span.lo + last_part[id(p)].p1))
               for p in work.closed}
        return sorted(work.closed, key=lambda p: key[id(p)])

    def _order(self, work: SpanEpisodes) -> list[EpisodePlan]:
        out = [work.cut] if work.cut is not None else []
        out += self._completion(work)
        for plan in out:
            self._assign(plan)
        return out

    def resume_point(self) -> tuple[int, ParserState]:
        """Index of the first span to read frames from, and the parser state before it."""
        if self.committed == 0:
            return 0, ParserState()
        parser = EpisodeParser(self.stack, describe=self.logs.describe)
        snapshots: list[tuple[ParserState, int]] = []
        for k, span in enumerate(self.spans):
            snapshots.append((parser.state.clone(), self.seq))
            open_plan = parser.state.open
            self._order(parser.feed(span, self._small(span)))
            if self.seq > self.committed:
                return self._rewind(k, open_plan, snapshots)
        end = parser.cut()
        if end is not None:
            self._assign(end)
            if self.seq > self.committed:
                return self._rewind(len(self.spans), end, snapshots)
        return len(self.spans), parser.state

    def _rewind(self, k: int, open_plan: EpisodePlan | None, snapshots) -> tuple[int, ParserState]:
        s = k
        if open_plan is not None:
            s = next(i for i, span in enumerate(self.spans) if span.index == open_plan.parts[0].span.index)
        state, self.seq = snapshots[s]
        logger.info("%s: %d episodes already written; reading frames again from checkpoint %d",
                    self.writer.root, self.committed, self.spans[min(s, len(self.spans) - 1)].index)
        return s, state.clone()

    # ------------------------------------------------------------------ work
    def _small(self, span: Span):
        return load_small_columns(self.logs, span.index, span.capacity).time_ordered(span)

    def convert(self, progress: Progress | None) -> None:
        start, state = self.resume_point()
        parser = EpisodeParser(self.stack, state, describe=self.logs.describe)
        self.frames = _FrameCount(progress, self.spans, start)
        for k in range(start, len(self.spans)):
            span = self.spans[k]
            work = parser.feed(span, self._small(span))
            self.dropped += work.dropped
            self._process(work)
        end = parser.cut()
        if end is not None:
            self._assign(end)
            self._emit(end)

    def _needed(self, plan: EpisodePlan) -> bool:
        return not plan.closed or plan.seq >= self.committed

    def _process(self, work: SpanEpisodes) -> None:
        order = self._order(work)
        if work.cut is not None:
            self._emit(order.pop(0))
        span = work.span
        intervals = [(r0, r1, off, part)
                     for plan, part in work.parts if self._needed(plan)
                     for r0, r1, off in span.rows(span.lo + part.p0, span.lo + part.p1)]
        if not intervals:
            for plan in order:
                self._emit(plan)
            self.frames.add(span.capacity)
            return
        intervals.sort(key=lambda t: t[0])
        ends = [max(r1 for r0, r1, _, part in intervals if part is p.parts[-1]) if self._needed(p) else -1
                for p in order]
        with observation_reader(self.logs, span.index, span.capacity, self.obs_shape) as reader:
            self.obs_shape = reader.header.shape[1:]
            frame = int(np.prod(self.obs_shape))
            pos, i = 0, 0
            for r0, r1, off, part in intervals:
                reader.skip((r0 - pos) * frame)
                if part.frames is None:
                    part.frames = np.empty((part.length, *self.obs_shape), dtype=np.uint8)
                reader.readinto(memoryview(part.frames[off:off + r1 - r0].reshape(-1)))
                self.frames.add(r1 - pos)
                pos = r1
                while i < len(order) and ends[i] <= pos:
                    self._emit(order[i])
                    i += 1
            reader.skip((span.capacity - pos) * frame)
            reader.finish()
            self.frames.add(span.capacity - pos)
        for plan in order[i:]:
            self._emit(plan)

    def _emit(self, plan: EpisodePlan) -> None:
        if plan.seq < self.committed:
            for part in plan.parts:
                part.frames = None
            return
        td, reward = _episode_td(plan)
        t = len(reward)
        events = [(int(i), "reward:+1" if reward[i] > 0 else "reward:-1", float(reward[i]))
                  for i in np.flatnonzero(reward)]
        if plan.terminated:
            events.append((t - 1, "episode_end", 1.0))
        self.writer.add_episode(
            td,
            metadata={"game": self.game, "run": self.run, "checkpoint": plan.checkpoint,
                      "return": float(reward.sum(dtype=np.float64)), "first_index": plan.first,
                      "terminated": int(plan.terminated)},
            events=events,
        )
        for part in plan.parts:
            part.frames = None


def _progress_bar(enabled: bool | Progress, desc: str) -> tuple[Progress, ProgressBar | None]:
    """The ``(done, total)`` callback of a conversion: the caller's, or a bar's over frames."""
    if callable(enabled):
        return enabled, None
    bar = ProgressBar(desc, None, unit="frame", enabled=bool(enabled))
    return bar.moveto, bar


def _dictionary_rows(logs: ReplayLogs, selected: list[int], encodings: dict[str, Any],
                     how: str) -> dict[str, np.ndarray] | None:
    """Frames to train the observation dictionary on, when it wants one and ``how`` is ``"spread"``."""
    spec = encodings.get("observation")
    if how != "spread" or spec is None or not getattr(resolve_encoding(spec), "dictionary", False):
        return None
    frames = spread_frames(logs, selected)
    return {"observation": frames} if len(frames) >= 8 else None


def convert_replay_logs(
    src: str | os.PathLike | ReplayLogs,
    root: str | os.PathLike,
    *,
    checkpoints: list[int] | None = None,
    stack_size: int = 4,
    game: str = "",
    run: int = 0,
    shard_bytes: int | None = None,
    encodings: dict[str, Any] | None = None,
    dictionary_rows: str = "spread",
    progress: bool | Progress = True,
) -> Path:
    """Converts a run's ``replay_logs`` into a dataset at ``root`` (resumes if one exists).

    Args:
        src: the run directory or its ``replay_logs`` subdirectory, or a
            :class:`ReplayLogs` (e.g. :class:`BucketReplayLogs` to stream from a bucket).
        root: output dataset directory.
        checkpoints: checkpoint indices to convert (default: all found).
        stack_size: the writer's frame stack (padding is ``stack_size - 1`` rows).
        game, run: recorded in the manifest and the episode table.
        shard_bytes: shard size budget (``ShardWriter`` default when ``None``).
        encodings: column encodings for a new dataset (default :data:`DEFAULT_ENCODINGS`:
            observations as zstd per frame with a dictionary, the layout for uniform
            random sampling; ``{"observation": "raw"}`` keeps memory maps).
        dictionary_rows: what a zstd dictionary of a new dataset is trained on:
            ``"spread"`` (frames picked across up to 3 of the selected checkpoints,
            see :mod:`.dictionary_rows`) or ``"first"`` (the first rows written).
        progress: show a progress bar over the frames of the observation files
            (from before the first file is read), or a callable ``(done, total)``
            called with those frame counts.

    Returns:
        ``root``. ``<root>/atari_dqn.json`` marks a finished conversion.
    """
    if dictionary_rows not in ("spread", "first"):
        raise ValueError(f"`dictionary_rows` must be 'spread' or 'first', got {dictionary_rows!r}")
    logs = src if isinstance(src, ReplayLogs) else LocalReplayLogs(src)
    root = user_path(root, "root")
    found = logs.checkpoints()
    selected = sorted(found if checkpoints is None else {int(c) for c in checkpoints})
    missing = sorted(set(selected) - set(found))
    if missing or not selected:
        raise ValueError(f"{logs.where}: checkpoints {missing or selected} requested, found {found}")
    source = {"type": "atari_dqn", "game": game, "run": run, "checkpoints": selected, "stack_size": stack_size,
              "converter": CONVERTER_VERSION}
    done_path = root / DONE_NAME
    if done_path.is_file() and conversion_record(done_path) == {"complete": True, **source}:
        return root
    EpisodeParser(stack_size)  # validates stack_size before anything is written
    update, bar = _progress_bar(progress, f"convert {game}/{run}" if game else f"convert {logs.where}")
    writer, completed = None, False
    try:
        spans = [s for s in build_timeline(logs, found) if s.index in set(selected)]
        last = None
        if (root / "dataset.json").exists():
            manifest = read_manifest(root)
            if manifest.source != source:
                raise ValueError(f"{root}: holds a conversion of {manifest.source}, asked for {source}; use "
                                 "another root")
            writer = ShardWriter.open(root)
            if writer.num_episodes:
                table = EpisodeTable.from_dataset(root, manifest.episodes)
                try:
                    last = table.row(writer.num_episodes - 1)
                finally:
                    table.close()
        else:
            chosen = DEFAULT_ENCODINGS if encodings is None else encodings
            writer = ShardWriter.create(root, shard_bytes=shard_bytes, source=source, encodings=chosen,
                                        dictionary_rows=_dictionary_rows(logs, selected, chosen, dictionary_rows))
        conv = _Conversion(logs, writer, spans, stack_size, game, run, writer.num_episodes, last)
        conv.convert(update)
        writer.close()
        completed = True
    finally:
        if writer is not None:
            writer.close()
        if bar is not None:
            bar.close(completed=completed)
    if conv.dropped:
        logger.info("skipped %d transitions whose episode start was not logged", conv.dropped)
    from ...events import EventIndex

    EventIndex.build(root)  # readers never build it; the conversion saves it once
    atomic_write_json(done_path, {"complete": True, **source, RECORDS_KEY: checkpoint_records(logs, spans)})
    return root
