"""Episode-aware frame stacking over a sharded storage's reader.

A sample of row ``r`` gets ``observation`` ``[stack, *frame]`` = frames
``r - stack + 1 .. r`` and ``("next", "observation")`` = frames ``r - stack + 2 .. r + 1``,
never crossing an episode start (padded with zeros or with the episode's first
frame) nor its end (the next frame after a final step is zeros, the Atari DQN
convention). History frames already in the batch (slices of consecutive rows)
are reused; the others are gathered once each, through the storage's own
reader (encoded columns share its decoded-chunk cache).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from ..format import Key
from ..storages import ShardedStorage, ShardReader

__all__ = ["FrameStack", "FrameStackStorage"]

_PADS = ("zeros", "first")


@dataclass(frozen=True)
class FrameStack:
    """Stacks the last ``stack`` frames of ``obs_key`` (a ``rows_view`` of :class:`ShardedStorage`)."""

    stack: int = 1
    pad: str = "zeros"
    obs_key: str = "observation"

    def __post_init__(self) -> None:
        if isinstance(self.stack, bool) or not isinstance(self.stack, int) or self.stack < 1:
            raise ValueError(f"`stack` must be a positive int, got {self.stack!r}")
        if self.pad not in _PADS:
            raise ValueError(f"`pad` must be one of {_PADS}, got {self.pad!r}")

    def __call__(self, reader: ShardReader, rows: np.ndarray, arrays: dict[Key, np.ndarray]) -> dict:
        n = rows.shape[0]
        false = np.zeros((n, 1), dtype=bool)
        for k in ("done", "terminated", "truncated"):
            arrays[(k,)] = false.copy()
        if self.stack == 1:
            return arrays
        key = (self.obs_key,)
        obs, nxt = arrays[key], arrays[("next", self.obs_key)]
        first_rows = reader.ep_first
        ep_first = first_rows[np.searchsorted(first_rows, rows, side="right") - 1]
        lag = np.arange(self.stack - 1, -1, -1, dtype=np.int64)  # stack-1 .. 0
        want = rows[:, None] - lag[None, :]
        valid = want >= ep_first[:, None]
        if self.pad == "first":
            want = np.where(valid, want, ep_first[:, None])
            valid = np.ones_like(valid)
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        extra = np.setdiff1d(want[valid], rows)
        pool_rows = np.concatenate((sorted_rows, extra))
        pool = np.concatenate((obs[order], reader.gather_column(key, extra))) if extra.size else obs[order]
        sort = np.argsort(pool_rows, kind="stable")
        pool_rows, pool = pool_rows[sort], pool[sort]
        pos = np.searchsorted(pool_rows, np.where(valid, want, pool_rows[0]))
        stacked = pool[pos]
        stacked[~valid] = 0
        arrays[key] = stacked
        arrays[("next", self.obs_key)] = np.concatenate((stacked[:, 1:], nxt[:, None]), axis=1)
        return arrays


class FrameStackStorage(ShardedStorage):
    """:class:`~torchrl_ext.ShardedStorage` whose samples stack the last frames of their episode.

    Args:
        root: dataset directory.
        stack: frames per observation; ``1`` keeps single frames ``[*frame]``.
        pad: ``"zeros"`` or ``"first"``: what fills the stack before an episode's first frame.
        obs_key: the observation column.
        **kwargs: passed to :class:`ShardedStorage` (``device``, ``cache_bytes``, ``verify`` ...).

    Every sample also carries root ``done``/``terminated``/``truncated`` (bool
    ``[1]``, always ``False``: a stored row is never past an episode's end).
    """

    def __init__(self, root: str | os.PathLike, *, stack: int = 1, pad: str = "zeros",
                 obs_key: str = "observation", device: torch.device | str = "cpu", **kwargs) -> None:
        view = FrameStack(stack, pad, obs_key)
        self.stack, self.pad, self.obs_key = stack, pad, obs_key
        super().__init__(root, device=device, rows_view=view, **kwargs)
