"""``EventSliceSampler``: fixed-length windows around indexed events, as a TorchRL ``Sampler``.

A batch of ``batch_size = num_windows * win_len`` rows is ``num_windows``
windows laid out one after the other (reshape the sample to
``[num_windows, win_len]``). The sampler writes into the sample, through the
replay buffer's info merge (``TensorDictReplayBuffer.sample`` sets every info
key on the batch):

* ``"mask"`` (bool): False at positions outside the episode (edges);
  those positions hold a valid row of the same episode.
* ``("event", "name_id")``, ``("event", "episode")``, ``("event", "step")``:
  the window's event (names in ``sampler.names``).
* ``("next", "truncated")`` (bool ``[B, 1]``): True at each window's last
  position, as ``SliceSampler`` marks slice ends.

Window rules follow MineStudio 1.1.6's ``EventDataset``
(``minestudio/data/minecraft/dataset_event.py``); ``compat="minestudio"`` selects
its exact defaults. Windows are selected once (see :mod:`torchrl_ext.events.windows`); sampling
is a handful of numpy ops and never reads shard payloads.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchrl.data.replay_buffers.samplers import Sampler

from ..writer import EpisodeTable
from ..events import EventIndex, WindowQuery, Windows, select_windows
from ..format import read_manifest

__all__ = ["EventSliceSampler"]

logger = logging.getLogger(__name__)


class _KeepReplacement(type(Sampler)):
    # TorchRL's sampler metaclass pops ``replacement=`` to dispatch to another
    # class; this sampler implements both modes itself.
    def __call__(cls, *args, **kwargs):
        return type.__call__(cls, *args, **kwargs)


class EventSliceSampler(Sampler, metaclass=_KeepReplacement):
    """Samples windows of ``win_len`` rows around events matching ``event_regex``.

    Args:
        root_or_index: dataset directory (the index is loaded, or built and
            saved if missing) or an :class:`~torchrl_ext.events.EventIndex`
            (episode bounds then come from the storage at the first sample).
        event_regex: ``re.match`` against event names.
        win_len, bias, skip_frame, min_nearby, max_within, max_within_mode, edge,
        min_step, split, split_ratio, split_mode: window rules, see
            :class:`~torchrl_ext.events.WindowQuery`.
        where: SQL ``WHERE`` over the episode table restricting the episodes.
        compat: ``"minestudio"`` applies ``WindowQuery.minestudio`` defaults.
        replacement: draw windows with replacement (default) or in epochs.
        balance: ``"windows"`` (uniform over windows) or ``"names"`` (uniform
            over event names, then over that name's windows; with replacement).
        drop_last: without replacement, start a new epoch instead of returning
            a short last batch.
        seed: seed of the sampling order (None: from ``torch.initial_seed()``).
        rank, world_size: keep windows ``rank::world_size`` (disjoint DDP shares;
            their sizes differ by at most one window, so ranks sampling without
            replacement may see one batch more or less per epoch).

    Examples:
        >>> from torchrl.data import TensorDictReplayBuffer
        >>> from torchrl_ext.storages import ShardedStorage
        >>> from torchrl_ext.synthetic import write_synthetic
        >>> import tempfile
        >>> root = write_synthetic(tempfile.mkdtemp() + "/ds", episodes=4, length=30, obs_shape=(2,), events_every=7)
        >>> sampler = EventSliceSampler(root, event_regex="tick:.*", win_len=4, bias=1)
        >>> rb = TensorDictReplayBuffer(storage=ShardedStorage(root), sampler=sampler, batch_size=8)
        >>> batch = rb.sample().reshape(2, 4)
        >>> bool((batch["step"][:, -1] == batch["event", "step"][:, -1]).all())
        True
    """

    def __init__(self, root_or_index: str | os.PathLike | EventIndex, *, event_regex: str = ".*",
                 win_len: int, bias: int = 0, skip_frame: int = 1, min_nearby: int | None = None,
                 max_within: int | None = None, max_within_mode: str = "first", edge: str | None = None,
                 min_step: int | None = None, split: str | None = None, split_ratio: float = 0.8,
                 split_mode: str | None = None, where: str | None = None, compat: str | None = None,
                 replacement: bool = True, balance: str = "windows", drop_last: bool = False,
                 seed: int | None = None, rank: int = 0, world_size: int = 1) -> None:
        self.query = WindowQuery.from_options(
            compat, event_regex=event_regex, win_len=win_len, bias=bias, skip_frame=skip_frame,
            min_nearby=min_nearby, max_within=max_within, max_within_mode=max_within_mode,
            split=split, split_ratio=split_ratio, seed=0 if seed is None else int(seed), edge=edge, min_step=min_step,
            split_mode=split_mode)
        if balance not in ("windows", "names"):
            raise ValueError(f"`balance` must be 'windows' or 'names', got {balance!r}")
        if balance == "names" and not replacement:
            raise ValueError("`balance='names'` needs `replacement=True`; an epoch without replacement "
                             "visits every window once, whatever its name")
        if not (isinstance(world_size, int) and world_size >= 1 and isinstance(rank, int)
                and 0 <= rank < world_size):
            raise ValueError(f"`rank` must be an int in [0, world_size) and `world_size` >= 1, got "
                             f"rank={rank!r}, world_size={world_size!r}")
        if isinstance(root_or_index, EventIndex):
            self.root, self.index = None, root_or_index
        elif isinstance(root_or_index, (str, os.PathLike)):
            self.root = Path(root_or_index)
            self.index = EventIndex.open(self.root)
        else:
            raise TypeError(f"`root_or_index` must be a dataset path or an EventIndex, got "
                            f"{type(root_or_index).__name__}")
        self.where = where
        self.replacement = bool(replacement)
        self.balance = balance
        self.drop_last = bool(drop_last)
        self.seed = int(torch.initial_seed() % (2**63)) if seed is None else int(seed)
        self.rank, self.world_size = rank, world_size
        self._windows: Windows | None = None
        self._reset_state()
        if self.root is not None:
            manifest = read_manifest(self.root)
            table = EpisodeTable.open(self.root / manifest.episodes)
            try:
                first, length, _ = table.bounds(manifest.num_episodes)
                eps = table.select(where, num_episodes=manifest.num_episodes) if where else None
            finally:
                table.close()
            self._prepare(first, length, eps)

    # ------------------------------------------------------------ windows
    def _prepare(self, first: np.ndarray, length: np.ndarray, episodes: np.ndarray | None) -> None:
        w = select_windows(self.index, first, length, self.query, episodes=episodes)
        if self.world_size > 1:
            w = w.take(np.arange(self.rank, len(w), self.world_size))
        self._windows = w
        self._name_groups = None
        logger.info("EventSliceSampler: %d windows over %d names", len(w), len(w.counts()))

    def _ensure(self, storage) -> Windows:
        if self._windows is None:
            first, length = storage.episode_bounds
            eps = None
            if self.where:
                table = storage.episode_table()
                try:
                    eps = table.select(self.where, num_episodes=len(first))
                finally:
                    table.close()
            self._prepare(first, length, eps)
        return self._windows

    @property
    def windows(self) -> Windows:
        """The selected windows (this rank's share); needs a root or one ``sample`` call."""
        if self._windows is None:
            raise RuntimeError("windows are selected at the first sample() when built from an EventIndex; "
                               "call sample(storage, batch_size) first or pass the dataset root")
        return self._windows

    @property
    def names(self) -> np.ndarray:
        """Event names; ``("event", "name_id")`` indexes into it."""
        return self.index.names

    def __len__(self) -> int:
        return len(self.windows)

    # ------------------------------------------------------------ sampling
    def _reset_state(self) -> None:
        self._epoch = 0
        self._cursor = 0
        self._draws = 0
        self._ran_out = False
        self._rng_np = np.random.default_rng([self.seed, 0])
        self._order: tuple[int, np.ndarray] | None = None

    def _epoch_order(self, n: int) -> np.ndarray:
        if self._order is None or self._order[0] != self._epoch or len(self._order[1]) != n:
            self._order = (self._epoch, np.random.default_rng([self.seed, self._epoch, 1]).permutation(n))
        return self._order[1]

    def _choose(self, k: int) -> np.ndarray:
        w = self._windows
        n = len(w)
        if self.replacement:
            rng = self._rng_np
            self._draws += 1
            if self.balance == "windows":
                return rng.integers(0, n, size=k)
            if self._name_groups is None:
                present = np.flatnonzero(np.bincount(w.name_id, minlength=len(w.names)))
                order = np.argsort(w.name_id, kind="stable")
                starts = np.searchsorted(w.name_id[order], present)
                sizes = np.searchsorted(w.name_id[order], present, side="right") - starts
                self._name_groups = (order, starts, sizes)
            order, starts, sizes = self._name_groups
            g = rng.integers(0, len(starts), size=k)
            return order[starts[g] + (rng.random(k) * sizes[g]).astype(np.int64)]
        self._ran_out = False
        if self._cursor >= n or (self.drop_last and n - self._cursor < k):
            self._epoch += 1
            self._cursor = 0
        if self.drop_last and k > n:
            raise ValueError(f"a batch needs {k} windows but only {n} exist; lower batch_size or "
                             "use drop_last=False")
        ids = self._epoch_order(n)[self._cursor:self._cursor + k]
        self._cursor += len(ids)
        remaining = n - self._cursor
        if remaining == 0 or (self.drop_last and remaining < k):
            self._ran_out = True
        return ids

    def sample(self, storage, batch_size: int) -> tuple[torch.Tensor, dict[Any, torch.Tensor]]:
        win_len = self.query.win_len
        if batch_size % win_len:
            raise ValueError(f"`batch_size` must be a multiple of win_len={win_len} (num_windows * win_len), "
                             f"got {batch_size}")
        w = self._ensure(storage)
        if len(w) == 0:
            raise RuntimeError(f"no window matches event_regex={self.query.event_regex!r} with these rules; "
                               f"names in the index: {list(self.index.names[:20])}")
        ids = self._choose(batch_size // win_len)
        rows, mask = w.rows_and_mask(ids)
        k = len(ids)
        trunc = np.zeros((k, win_len), bool)
        trunc[:, -1] = True
        rep = lambda a: torch.from_numpy(np.repeat(np.asarray(a, np.int64), win_len))  # noqa: E731
        info = {
            "mask": torch.from_numpy(mask.reshape(-1)),
            ("event", "name_id"): rep(w.name_id[ids]),
            ("event", "episode"): rep(w.episode[ids]),
            ("event", "step"): rep(w.event_step[ids]),
            ("next", "truncated"): torch.from_numpy(trunc.reshape(-1, 1)),
        }
        return torch.from_numpy(rows.reshape(-1)), info

    def _sampleable_count(self, storage, batch_size: int) -> int:
        return len(self._ensure(storage))

    @property
    def ran_out(self) -> bool:
        return self._ran_out

    # ------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "epoch": self._epoch, "cursor": self._cursor, "draws": self._draws,
                "ran_out": self._ran_out, "rng": self._rng_np.bit_generator.state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        missing = {"seed", "epoch", "cursor", "draws"} - set(state_dict)
        if missing:
            raise ValueError(f"EventSliceSampler state needs keys {sorted(missing)}; got {sorted(state_dict)}")
        self.seed = int(state_dict["seed"])
        self._epoch = int(state_dict["epoch"])
        self._cursor = int(state_dict["cursor"])
        self._draws = int(state_dict["draws"])
        self._ran_out = bool(state_dict.get("ran_out", False))
        self._rng_np = np.random.default_rng([self.seed, 0])
        if "rng" in state_dict:
            self._rng_np.bit_generator.state = state_dict["rng"]
        self._order = None

    def _empty(self) -> None:
        self._reset_state()

    def dumps(self, path: str | os.PathLike) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), path / "event_slice_sampler.pt")

    def loads(self, path: str | os.PathLike) -> None:
        self.load_state_dict(torch.load(Path(path) / "event_slice_sampler.pt"))

    def __repr__(self) -> str:
        n = "?" if self._windows is None else len(self._windows)
        return (f"EventSliceSampler(event_regex={self.query.event_regex!r}, win_len={self.query.win_len}, "
                f"bias={self.query.bias}, windows={n}, replacement={self.replacement})")
