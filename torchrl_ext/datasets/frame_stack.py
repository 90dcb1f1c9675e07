"""Episode-aware frame stacking over a sharded storage's reader.

A sample of row ``r`` gets ``observation`` ``[stack, *frame]`` = frames
``r - stack + 1 .. r`` and ``("next", "observation")`` = frames ``r - stack + 2 .. r + 1``,
never crossing an episode start (padded with zeros or with the episode's first
frame) nor its end (the next frame after a final step is the episode's stored
final frame, else zeros, the Atari DQN convention).

Rows ``r - stack + 1 .. r + 1`` of a batch are one index array: the storage's
reader gathers each distinct row once, in row order (one copy per shard, or
one decompression call), and one ``take`` lays them out as one
``[B, stack + 1, *frame]`` array whose views
``[:, :stack]`` and ``[:, 1:]`` are the observation and the next observation
(they share memory: write to a copy).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from ..encodings.frame_bytes import Workspace
from ..format import Key
from ..storages import ShardedStorage, ShardReader
from ..storages.batch_memory import batch_array
from ..validation import one_of, positive_int

__all__ = ["LAYOUTS", "FrameStack", "FrameStackStorage", "torchrl_layout"]

_PADS = ("zeros", "first")
LAYOUTS = ("torchrl_ext", "torchrl")
_workspace = Workspace()  # the distinct frames of a batch, kept per thread: no fresh pages per batch


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

    def reads(self, reader: ShardReader) -> list[Key] | None:
        """The keys the storage's reader gathers for this view (None: all); the stacked frames are read here."""
        if self.stack == 1:
            return None
        return [c.key for c in reader.columns if c.key != (self.obs_key,)]

    def __call__(self, reader: ShardReader, rows: np.ndarray, arrays: dict[Key, np.ndarray]) -> dict:
        n = rows.shape[0]
        false = np.zeros((n, 1), dtype=bool)
        for k in ("done", "terminated", "truncated"):
            arrays[(k,)] = false.copy()
        if self.stack > 1:
            self._stack(reader, rows, arrays)
        return torchrl_layout(arrays) if self.layout == "torchrl" else arrays

    def _stack(self, reader: ShardReader, rows: np.ndarray, arrays: dict[Key, np.ndarray]) -> None:
        key, nkey, stack = (self.obs_key,), ("next", self.obs_key), self.stack
        rebuilt = key in reader.next_keys  # ("next", obs) is the following row: one more column of the stack
        width = stack + 1 if rebuilt else stack
        episode = np.searchsorted(reader.ep_first, rows, side="right") - 1
        first = reader.ep_first[episode][:, None]
        want = rows[:, None] + np.arange(1 - stack, width - stack + 1, dtype=np.int64)  # r-stack+1 .. r (+ r+1)
        valid = np.ones(want.shape, dtype=bool)
        if self.pad == "first":
            want[:, :stack] = np.maximum(want[:, :stack], first)
        else:
            valid[:, :stack] = want[:, :stack] >= first
        if rebuilt:
            last = rows == reader.ep_last[episode]
            valid[:, stack] = ~last
        # Each distinct frame read once, in row order (one copy per shard, or one decompression call),
        # then one take lays the stacks out.
        distinct, where = np.unique(np.where(valid, want, rows[:, None]), return_inverse=True)
        col = reader.manifest.column(key)
        pool = reader.gather_column(key, distinct, _workspace.get("pool", (distinct.shape[0], *col.shape), col.dtype))
        frames = batch_array((rows.shape[0], width, *pool.shape[1:]), pool.dtype)
        np.take(pool, where.reshape(-1), axis=0, mode="clip", out=frames.reshape(-1, *pool.shape[1:]))
        if not valid[:, :stack].all():
            frames[:, :stack][~valid[:, :stack]] = 0
        if rebuilt:
            if last.any():
                reader.fill_final(key, rows, last, frames[:, stack])
            arrays[key], arrays[nkey] = frames[:, :stack], frames[:, 1:]
        else:
            arrays[key] = frames
            arrays[nkey] = np.concatenate((frames[:, 1:], arrays[nkey][:, None]), axis=1)


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
