"""``MultiRunStorage``: several converted runs (or games) behind one read-only TorchRL storage.

Global row ``i`` is row ``i - offset[k]`` of part ``k``, parts in the order
given; episode ids are made unique by offsetting each part's ids by the
episodes of the parts before it, so ``SliceSampler(trajectories=storage.episodes)``
never joins two runs. Each part keeps its own behaviour (frame stacks never
cross an episode, nor a run). Samples have the parts' keys, nothing more;
:meth:`MultiRunStorage.part_of` maps rows back to their part.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict
from torchrl.data.replay_buffers import Storage, TensorStorage

from ..compat.torchrl_storage import read_only_storage
from ..storages.batch_memory import batch_array, intermediate
from ..storages.routing import index_rows
from ..storages.sharded import ShardedStorage, rows_td

__all__ = ["MultiRunStorage"]

_READ_ONLY = "MultiRunStorage is read-only; convert more runs and build a new one"


@read_only_storage
class MultiRunStorage(TensorStorage):
    """Concatenation of read-only storages (e.g. one ``FrameStackStorage`` per run).

    Args:
        parts: storages with ``get``, ``len`` and ``episodes`` (int64 episode id per row).
        names: one label per part (e.g. ``"Pong/1"``), for :attr:`names`.

    Example:
        >>> import tempfile
        >>> from torchrl_ext import ShardedStorage
        >>> from torchrl_ext.synthetic import write_synthetic
        >>> a = ShardedStorage(write_synthetic(tempfile.mkdtemp() + "/a", episodes=2, length=3, obs_shape=(2,)))
        >>> b = ShardedStorage(write_synthetic(tempfile.mkdtemp() + "/b", episodes=3, length=3, obs_shape=(2,)))
        >>> s = MultiRunStorage([a, b], names=["a", "b"])
        >>> len(s), s.episodes.unique().tolist(), s.part_of([0, 6]).tolist()
        (15, [0, 1, 2, 3, 4], [0, 1])
    """

    @property
    def concurrent_reads(self) -> bool:
        """True when every part's reads are thread-safe (the routing itself is immutable)."""
        return all(getattr(p, "concurrent_reads", False) is True for p in self.parts)

    read_only_message = _READ_ONLY

    def __init__(self, parts: Sequence[Any], *, names: Sequence[str] | None = None) -> None:
        parts = list(parts)
        if not parts:
            raise ValueError("`parts` is empty; expected at least one storage")
        if names is not None and len(names) != len(parts):
            raise ValueError(f"`names` must have one entry per part ({len(parts)}), got {len(names)}")
        self.parts = parts
        self.names = list(names) if names is not None else [str(i) for i in range(len(parts))]
        sizes = np.asarray([len(p) for p in parts], dtype=np.int64)
        self._offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        episodes = [p.episodes for p in parts]
        counts = [int(e.max()) + 1 if e.numel() else 0 for e in episodes]
        self._ep_offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        self._episodes = torch.cat([e + int(o) for e, o in zip(episodes, self._ep_offsets)])
        self._rows = int(self._offsets[-1])
        Storage.__init__(self, max_size=self._rows)

    @property
    def episodes(self) -> torch.Tensor:
        """Episode id of every row, unique across parts."""
        return self._episodes

    def part_of(self, index: Any) -> torch.Tensor:
        """Part number of each row in ``index``."""
        idx = self._index_array(index)
        return torch.from_numpy(np.searchsorted(self._offsets, idx, side="right") - 1)

    def __len__(self) -> int:
        return self._rows

    @property
    def storage_keys(self) -> list:
        return list(self.parts[0].storage_keys)

    def random_rows(self, batch_size: int) -> torch.Tensor:
        if self._rows == 0:
            raise RuntimeError("MultiRunStorage: the runs hold no rows to sample")
        return torch.randint(0, self._rows, (batch_size,), generator=self._rng)

    def _index_array(self, index: Any) -> np.ndarray:
        return index_rows(index, self._rows)

    def get(self, index: Any) -> TensorDict:
        idx = self._index_array(index)
        flat = idx.reshape(-1)
        part = np.searchsorted(self._offsets, flat, side="right") - 1
        if all(_reads_arrays(p) for p in self.parts):
            return rows_td(self._gather_arrays(flat, part), idx.shape)
        pieces = []
        for k in np.unique(part).tolist():
            sel = np.flatnonzero(part == k)
            td = self.parts[k].get(torch.from_numpy(flat[sel] - self._offsets[k]))
            if "episode" in td:
                td.set("episode", td.get("episode") + int(self._ep_offsets[k]))
            pieces.append((sel, td))
        if not pieces:
            return self.parts[0].get(torch.zeros(0, dtype=torch.int64)).reshape(idx.shape)
        if len(pieces) == 1:
            return pieces[0][1].reshape(idx.shape)
        back = np.argsort(np.concatenate([sel for sel, _ in pieces]), kind="stable")
        return torch.cat([td for _, td in pieces])[torch.from_numpy(back)].reshape(idx.shape)

    def _gather_arrays(self, flat: np.ndarray, part: np.ndarray) -> dict:
        """Every part's rows as numpy arrays, scattered into one array per key: each value copied once,
        in this thread (torch's ``cat`` and index copy twice on its intra-op threads: 10-50x slower per
        batch on a busy machine)."""
        ks = np.unique(part).tolist() or [0]
        if len(ks) == 1:
            return self._part_arrays(ks[0], flat)
        out: dict = {}
        for k in ks:
            sel = np.flatnonzero(part == k)
            with intermediate():  # copied into ``out`` below: no shared segment of its own in a worker
                arrays = self._part_arrays(k, flat[sel])
            for key, a in arrays.items():
                if key not in out:
                    out[key] = batch_array((len(flat), *a.shape[1:]), a.dtype)
                out[key][sel] = a
        return out

    def _part_arrays(self, k: int, rows: np.ndarray) -> dict:
        arrays = self.parts[k].read_arrays(rows - self._offsets[k])
        if ("episode",) in arrays:
            arrays[("episode",)] = arrays[("episode",)] + self._ep_offsets[k]
        return arrays

    def state_dict(self) -> dict[str, Any]:
        return {"parts": [p.state_dict() for p in self.parts], "names": self.names}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if len(state_dict["parts"]) != len(self.parts):
            raise ValueError(f"state_dict has {len(state_dict['parts'])} parts, this storage {len(self.parts)}")
        for part, state in zip(self.parts, state_dict["parts"]):
            part.load_state_dict(state)

    def __getstate__(self) -> dict[str, Any]:
        return Storage.__getstate__(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        Storage.__setstate__(self, state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(parts={self.names}, rows={self._rows})"


def _reads_arrays(part: Any) -> bool:
    """True for a CPU ``ShardedStorage`` whose ``get`` is ``read_arrays`` wrapped (not overridden)."""
    return (isinstance(part, ShardedStorage) and type(part).get is ShardedStorage.get
            and part.device.type == "cpu")
