"""``CrowdPlayFrames``: CrowdPlay's processed observations as a :func:`torchrl_ext.preprocess` preset.

``preprocess(root, CrowdPlayFrames(root), dest)`` writes, once and
shard-parallel, a dataset whose ``observation`` is CrowdPlay's stacked
84x84 gray observation of each step (the arrays
:func:`~torchrl_ext.interop.crowdplay.processed_trajectory` returns with
``downsample_frequency=1``); every other column, the episode table and the
events carry over, so filters and samplers work on it unchanged. The
observation after an episode's last step is built as if the stored next
frame (the final frame, or zeros) had entered the buffer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .processed import FrameBuffer

__all__ = ["CrowdPlayFrames"]


@dataclass
class CrowdPlayFrames:
    """Row-wise preset: raw RGB ``key`` ``[n, 210, 160, 3]`` -> CrowdPlay's processed observation.

    Args:
        root: the source dataset (earlier frames of an episode are read from it).
        key: the observation column.
        stack_n, max_n, skip_n, warp, scale, warp_width, warp_height,
            framestack_axis_first: the :class:`FrameBuffer` arguments.
    """

    root: str | os.PathLike
    key: str = "observation"
    stack_n: int = 4
    max_n: int = 2
    skip_n: int = 4
    warp: bool = True
    scale: bool = False
    warp_width: int = 84
    warp_height: int = 84
    framestack_axis_first: bool = False
    _storage: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.root = os.fspath(self.root)
        self.buffer  # validates the arguments

    @property
    def buffer(self) -> FrameBuffer:
        return FrameBuffer(max_n=self.max_n, skip_n=self.skip_n, stack_n=self.stack_n, warp=self.warp,
                           scale=self.scale, warp_width=self.warp_width, warp_height=self.warp_height,
                           framestack_axis_first=self.framestack_axis_first)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_storage": None}  # workers open the source themselves

    def __call__(self, td: Any) -> Any:
        if self._storage is None:
            from ...storages import ShardedStorage

            self._storage = ShardedStorage(self.root, cache_bytes=0)
        fb = self.buffer
        reader = self._storage.reader
        first, length = self._storage.episode_bounds
        now = td[self.key].numpy()
        nxt_raw = td["next", self.key].numpy()
        episode = td["episode"].reshape(-1).numpy()
        step = td["step"].reshape(-1).numpy()
        rows = first[episode] + step
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        n = len(rows)
        out = nxt = None
        for e in np.unique(episode):
            mine = np.flatnonzero(episode == e)
            a, size = int(first[e]), int(length[e])

            def frames_at(steps: np.ndarray, a: int = a, size: int = size, e: int = e) -> np.ndarray:
                res = np.empty((len(steps), *now.shape[1:]), now.dtype)
                want = a + steps
                pos = np.minimum(np.searchsorted(sorted_rows, want), max(n - 1, 0))
                hit = (sorted_rows[pos] == want) if n else np.zeros(len(steps), bool)
                res[hit] = now[order[pos[hit]]]
                virtual = steps >= size  # the frame after the last step
                if virtual.any():
                    last = np.flatnonzero((episode == e) & (step == size - 1))[0]
                    res[virtual] = nxt_raw[last]
                rest = ~hit & ~virtual
                if rest.any():
                    res[rest] = reader.gather_column((self.key,), want[rest])
                return res

            s = step[mine]
            both = np.unique(np.concatenate((s, s + 1)))
            stacks = fb.stack(frames_at, both)
            if out is None:
                out = np.empty((n, *stacks.shape[1:]), stacks.dtype)
                nxt = np.empty_like(out)
            out[mine] = stacks[np.searchsorted(both, s)]
            nxt[mine] = stacks[np.searchsorted(both, s + 1)]
        td[self.key] = torch.from_numpy(out)
        td["next", self.key] = torch.from_numpy(nxt)
        return td
