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
from ..validation import one_of, positive_int

__all__ = ["FrameStack", "FrameStackStorage", "LAYOUTS", "torchrl_layout"]

_PADS = ("zeros", "first")
LAYOUTS = ("torchrl_ext", "torchrl")


@dataclass(frozen=True)
class FrameStack:
    """Stacks the last ``stack`` frames of ``obs_key`` (a ``rows_view`` of :class:`ShardedStorage`)."""

    stack: int = 1
    pad: str = "zeros"
    obs_key: str = "observation"
    layout: str = "torchrl_ext"

    def __post_init__(self) -> None:
        positive_int(self.stack, "stack")
        one_of(self.pad, "pad", _PADS)
        one_of(self.layout, "layout", LAYOUTS)

    def __call__(self, reader: ShardReader, rows: np.ndarray, arrays: dict[Key, np.ndarray]) -> dict:
        n = rows.shape[0]
        false = np.zeros((n, 1), dtype=bool)
        for k in ("done", "terminated", "truncated"):
            arrays[(k,)] = false.copy()
        if self.stack > 1:
            self._stack(reader, rows, arrays)
        return torchrl_layout(arrays) if self.layout == "torchrl" else arrays

    def _stack(self, reader: ShardReader, rows: np.ndarray, arrays: dict[Key, np.ndarray]) -> None:
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


def torchrl_layout(arrays: dict[Key, np.ndarray]) -> dict[Key, np.ndarray]:
    """Rows as ``torchrl.data.datasets.AtariDQNExperienceReplay`` returns them.

    Flags are uint8 ``[B]`` (``("next", "done")`` equals ``("next", "terminated")``,
    every other flag is zero), the reward is float32 ``[B]``, and ``episode`` /
    ``step`` are not returned (use ``storage.episodes``).
    """
    out = {k: v for k, v in arrays.items() if k not in (("episode",), ("step",))}
    terminated = arrays[("next", "terminated")].reshape(-1).astype(np.uint8)
    zeros = np.zeros_like(terminated)
    out[("next", "reward")] = arrays[("next", "reward")].reshape(-1)
    out[("next", "terminated")] = terminated
    out[("next", "done")] = terminated.copy()
    out[("next", "truncated")] = zeros
    for k in ("done", "terminated", "truncated"):
        out[(k,)] = zeros.copy()
    return out


class FrameStackStorage(ShardedStorage):
    """:class:`~torchrl_ext.ShardedStorage` whose samples stack the last frames of their episode.

    Args:
        root: dataset directory.
        stack: frames per observation; ``1`` keeps single frames ``[*frame]``.
        pad: ``"zeros"`` or ``"first"``: what fills the stack before an episode's first frame.
        obs_key: the observation column.
        layout: ``"torchrl_ext"`` (TorchRL's env convention: bool flags ``[B, 1]``,
            reward ``[B, 1]``, plus ``episode``/``step``) or ``"torchrl"``
            (exactly what ``torchrl.data.datasets.AtariDQNExperienceReplay``
            returns: uint8 flags ``[B]``, reward ``[B]``; see :func:`torchrl_layout`).
        **kwargs: passed to :class:`ShardedStorage` (``device``, ``cache_bytes``, ``verify`` ...).

    Every sample also carries root ``done``/``terminated``/``truncated`` (bool
    ``[1]``, always ``False``: a stored row is never past an episode's end).
    """

    def __init__(self, root: str | os.PathLike, *, stack: int = 1, pad: str = "zeros",
                 obs_key: str = "observation", layout: str = "torchrl_ext",
                 device: torch.device | str = "cpu", **kwargs) -> None:
        view = FrameStack(stack, pad, obs_key, layout)
        self.stack, self.pad, self.obs_key, self.layout = stack, pad, obs_key, layout
        super().__init__(root, device=device, rows_view=view, **kwargs)

    def at(self, root: str | os.PathLike) -> FrameStackStorage:
        """This frame stacking and these settings over another dataset (see :meth:`ShardedStorage.at`)."""
        return FrameStackStorage(root, stack=self.stack, pad=self.pad, obs_key=self.obs_key, layout=self.layout,
                                 device=self.device, cache_bytes=self.cache_bytes, verify=self.reader.verify_mode)
