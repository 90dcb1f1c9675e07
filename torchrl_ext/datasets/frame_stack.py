"""``FrameStackStorage``: a sharded storage whose samples stack the last frames of their episode.

A sample of row ``r`` gets ``observation`` ``[stack, *frame]`` = frames
``r - stack + 1 .. r`` and ``("next", "observation")`` = frames ``r - stack + 2 .. r + 1``,
never crossing an episode start (padded with zeros or with the episode's first
frame) nor its end (the next frame after a final step is zeros, the Atari DQN
convention). History frames already in the batch (slices of consecutive rows)
are reused; the others are gathered once each.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict

from ..format import column_path
from ..storages import ShardedStorage
from ..storages.routing import gather, route

__all__ = ["FrameStackStorage"]

_PADS = ("zeros", "first")


class FrameStackStorage(ShardedStorage):
    """:class:`~torchrl_ext.ShardedStorage` with episode-aware frame stacking and root done flags.

    Args:
        root: dataset directory.
        stack: frames per observation; ``1`` keeps single frames ``[*frame]``.
        pad: ``"zeros"`` or ``"first"``: what fills the stack before an episode's first frame.
        obs_key: the observation column.

    Every sample also carries root ``done``/``terminated``/``truncated`` (bool
    ``[1]``, always ``False``: a stored row is never past an episode's end).
    """

    def __init__(self, root: str | os.PathLike, *, stack: int = 1, pad: str = "zeros",
                 obs_key: str = "observation", device: torch.device | str = "cpu") -> None:
        if isinstance(stack, bool) or not isinstance(stack, int) or stack < 1:
            raise ValueError(f"`stack` must be a positive int, got {stack!r}")
        if pad not in _PADS:
            raise ValueError(f"`pad` must be one of {_PADS}, got {pad!r}")
        self.stack, self.pad, self.obs_key = stack, pad, obs_key
        super().__init__(root, device=device)

    def _frames(self, rows: np.ndarray) -> np.ndarray:
        m = self.manifest
        col = m.column((self.obs_key,))
        maps = getattr(self, "_obs_maps", None)
        if maps is None or len(maps) != len(m.shards):
            maps = [np.memmap(column_path(self.root / s.dir, col.key), dtype=col.dtype, mode="r",
                              shape=(s.rows, *col.shape)) if s.rows else np.zeros((0, *col.shape), col.dtype)
                    for s in m.shards]
            self._obs_maps = maps
            self._obs_offsets = np.concatenate(([0], np.cumsum([s.rows for s in m.shards]))).astype(np.int64)
        out = np.empty((rows.shape[0], *col.shape), dtype=col.dtype)
        return gather(maps, route(self._obs_offsets, rows), out)

    def get(self, index: Any) -> TensorDict:
        td = super().get(index)
        shape = td.batch_size
        false = torch.zeros((*shape, 1), dtype=torch.bool)
        td.set("done", false)
        td.set("terminated", false.clone())
        td.set("truncated", false.clone())
        if self.stack == 1:
            return td
        rows = self._index_array(index).reshape(-1)
        obs = td[self.obs_key].reshape(-1, *td[self.obs_key].shape[len(shape):]).numpy()
        nxt = td["next", self.obs_key].reshape(obs.shape).numpy()
        first_rows, _ = self.episode_bounds
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
        pool = np.concatenate((obs[order], self._frames(extra))) if extra.size else obs[order]
        sort = np.argsort(pool_rows, kind="stable")
        pool_rows, pool = pool_rows[sort], pool[sort]
        pos = np.searchsorted(pool_rows, np.where(valid, want, pool_rows[0]))
        stacked = pool[pos]
        stacked[~valid] = 0
        next_stacked = np.concatenate((stacked[:, 1:], nxt[:, None]), axis=1)
        frame = stacked.shape[2:]
        td.set(self.obs_key, torch.from_numpy(stacked.reshape(*shape, self.stack, *frame)))
        td.set(("next", self.obs_key), torch.from_numpy(next_stacked.reshape(*shape, self.stack, *frame)))
        return td

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_obs_maps", None)
        state.pop("_obs_offsets", None)
        return state
