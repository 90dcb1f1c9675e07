"""Frames picked across a run's checkpoints, for the zstd dictionary of its observations.

By default a zstd dictionary is trained on a dataset's first 1,024 rows; for a
DQN run those are the first episode of checkpoint 0, played by an untrained
agent, while later checkpoints show later levels and other screens. Before a
new conversion writes anything, :func:`spread_frames` reads the observation
files of up to :data:`MAX_FILES` checkpoints spread over the selected ones
(the first, the last and evenly between) and keeps :data:`SAMPLE_ROWS` frames
evenly spaced through each, padding rows (all zeros) left out. Reading costs
one more inflate of those files (a few seconds each, next to minutes of
conversion per run); a bucket run streams them once more.
"""

from __future__ import annotations

import math

import numpy as np

from .logs import ReplayLogs
from .records import observation_reader, read_capacity

__all__ = ["MAX_FILES", "SAMPLE_ROWS", "spread_checkpoints", "spread_frames"]

SAMPLE_ROWS = 4096  # frames the dictionary is trained on
MAX_FILES = 3  # observation files read for them


def spread_checkpoints(selected: list[int], files: int = MAX_FILES) -> list[int]:
    """Up to ``files`` of ``selected`` (sorted): the first, the last and evenly between.

    >>> spread_checkpoints([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), spread_checkpoints([4, 9]), spread_checkpoints([2])
    ([0, 5, 10], [4, 9], [2])
    """
    picks = np.linspace(0, len(selected) - 1, min(files, len(selected))).round().astype(np.int64)
    return [selected[i] for i in sorted(set(picks.tolist()))]


def spread_frames(logs: ReplayLogs, selected: list[int], rows: int = SAMPLE_ROWS) -> np.ndarray:
    """``[n, 84, 84]`` uint8 frames evenly spaced through the spread checkpoints' observation files."""
    picks = spread_checkpoints(selected)
    per = -(-rows // len(picks))
    out = []
    for k in picks:
        with observation_reader(logs, k, read_capacity(logs, k)) as r:
            shape = r.header.shape
            frame_bytes = math.prod(shape[1:])
            pos = 0
            for want in np.linspace(0, shape[0] - 1, min(per, shape[0])).astype(np.int64).tolist():
                r.skip((want - pos) * frame_bytes)
                frame = np.empty(shape[1:], np.uint8)
                r.readinto(memoryview(frame.reshape(-1)))
                out.append(frame)
                pos = want + 1
            r.skip((shape[0] - pos) * frame_bytes)
            r.finish()
    frames = np.stack(out)
    return frames[frames.reshape(len(frames), -1).any(axis=1)]
