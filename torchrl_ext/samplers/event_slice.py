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

from ..compat.torchrl_samplers import SamplerBase
from ..events import EventIndex, WindowQuery, Windows, select_windows
from ..events.query import query_from
from ..storages import EpisodeView, ShardedStorage
from ..validation import int_in_range, nonnegative_int, one_of, positive_int, user_path

__all__ = ["EventSliceSampler"]

logger = logging.getLogger(__name__)


class EventSliceSampler(SamplerBase):
    """Samples windows of ``query.win_len`` rows around events matching ``query.event_regex``.

    Args:
        root_or_storage: a :class:`~torchrl_ext.storages.ShardedStorage`, its
            dataset directory or an :class:`~torchrl_ext.storages.EpisodeView`
            (only its episodes, in its rows): windows are selected at once from
            its episode bounds. Or an :class:`~torchrl_ext.events.EventIndex`: windows are
            selected from the replay buffer's storage at the first sample.
        query: the window rules; or pass them as keyword ``options``.
        where: SQL ``WHERE`` over the episode table restricting the episodes.
        replacement: draw windows with replacement (default) or in epochs.
        balance: ``"windows"`` (uniform over windows) or ``"names"`` (uniform
            over event names, then over that name's windows; with replacement).
        drop_last: without replacement, start a new epoch instead of returning
            a short last batch.
        seed: seed of the sampling order (None: from ``torch.initial_seed()``);
            in the keyword form also the query's seed (None: 0).
        rank, world_size: keep windows ``rank::world_size`` (disjoint DDP shares;
            their sizes differ by at most one window, so ranks sampling without
            replacement may see one batch more or less per epoch).
        build_missing: what to do when the dataset's event index is missing or
            stale (see :meth:`EventIndex.open`); the sampler never writes.
        **options: the keyword form of ``query``: any
            :class:`~torchrl_ext.events.WindowQuery` field (``win_len`` is
            required) and ``compat="minestudio"``, through
            :meth:`WindowQuery.from_options`.

    Examples:
        >>> from torchrl.data import TensorDictReplayBuffer
        >>> from torchrl_ext.storages import ShardedStorage
        >>> from torchrl_ext.synthetic import write_synthetic
        >>> import tempfile
        >>> root = write_synthetic(tempfile.mkdtemp() + "/ds", episodes=4, length=30, obs_shape=(2,), events_every=7)
        >>> _ = EventIndex.build(root)
        >>> storage = ShardedStorage(root)
        >>> sampler = EventSliceSampler(storage, WindowQuery(event_regex="tick:[12]", win_len=4, bias=1), seed=0)
        >>> rb = TensorDictReplayBuffer(storage=storage, sampler=sampler, batch_size=8)
        >>> batch = rb.sample().reshape(2, 4)
        >>> bool((batch["step"][:, -1] == batch["event", "step"][:, -1]).all())
        True
    """

    def __init__(self, root_or_storage: str | os.PathLike | ShardedStorage | EventIndex,
                 query: WindowQuery | None = None, *, where: str | None = None, replacement: bool = True,
                 balance: str = "windows", drop_last: bool = False, seed: int | None = None, rank: int = 0,
                 world_size: int = 1, build_missing: str = "memory", **options: Any) -> None:
        seed = nonnegative_int(seed, "seed", allow_none=True)
        if query is None and options:
            options.setdefault("seed", 0 if seed is None else seed)
        self.query = query_from(query, options, owner="EventSliceSampler")
        one_of(balance, "balance", ("windows", "names"))
        if balance == "names" and not replacement:
            raise ValueError("`balance='names'` needs `replacement=True`; an epoch without replacement "
                             "visits every window once, whatever its name")
        self.world_size = positive_int(world_size, "world_size")
        self.rank = int_in_range(rank, "rank", 0, self.world_size - 1)
        if where is not None and not isinstance(where, str):
            raise TypeError(f"`where` must be an SQL WHERE clause (str) or None, got {where!r}")
        storage = None
        if isinstance(root_or_storage, EventIndex):
            self.root, self.index = None, root_or_storage
        elif isinstance(root_or_storage, (str, os.PathLike, ShardedStorage, EpisodeView)):
            storage = (root_or_storage if isinstance(root_or_storage, (ShardedStorage, EpisodeView))
                       else ShardedStorage(root_or_storage))
            self.root = Path(storage.root)
            self.index = EventIndex.open(self.root, build_missing=build_missing)
        else:
            raise TypeError(f"`root_or_storage` must be a dataset path, a ShardedStorage or an EventIndex, got "
                            f"{type(root_or_storage).__name__}")
        self.where = where
        self.replacement = bool(replacement)
        self.balance = balance
        self.drop_last = bool(drop_last)
        self.seed = int(torch.initial_seed() % (2**63)) if seed is None else seed
        self._windows: Windows | None = None
        self._reset_state()
        if storage is not None:
            self._ensure(storage)

    # ------------------------------------------------------------ windows
    def _prepare(self, first: np.ndarray, length: np.ndarray, episodes: np.ndarray | None) -> None:
        w = select_windows(self.index, first, length, self.query, episodes=episodes)
        if self.world_size > 1:
            w = w.take(np.arange(self.rank, len(w), self.world_size))
        self._windows = w
        self._name_groups = None
        logger.info("EventSliceSampler: %d windows over %d names", len(w), len(w.counts()))

    def _ensure(self, storage: Any) -> Windows:
        if self._windows is None:
            first, length = storage.episode_bounds
            self._prepare(first, length, storage.select_episodes(self.where))
        return self._windows

    @property
    def windows(self) -> Windows:
        """The selected windows (this rank's share); needs a storage or root, or one ``sample`` call."""
        if self._windows is None:
            raise RuntimeError("windows are selected at the first sample() when built from an EventIndex; "
                               "call sample(storage, batch_size) first or pass the storage or its root")
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
        rep = lambda a: torch.from_numpy(np.repeat(np.asarray(a, np.int64), win_len))
        info = {
            "mask": torch.from_numpy(mask.reshape(-1)),
            ("event", "name_id"): rep(w.name_id[ids]),
            ("event", "episode"): rep(w.episode[ids]),
            ("event", "step"): rep(w.event_step[ids]),
            ("next", "truncated"): torch.from_numpy(trunc.reshape(-1, 1)),
        }
        return torch.from_numpy(rows.reshape(-1)), info

    def sampleable_count(self, storage: Any, batch_size: int) -> int:
        """Number of windows (of this rank); 0 makes ``rb.can_sample()`` False."""
        return len(self._ensure(storage))

    @property
    def ran_out(self) -> bool:
        return self._ran_out

    @ran_out.setter
    def ran_out(self, value: bool) -> None:  # ReplayBuffer.__iter__ clears it before an epoch
        self._ran_out = bool(value)

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

    def reset(self) -> None:
        """Back to the first epoch and the seed's first draw (``rb.empty()`` calls it)."""
        self._reset_state()

    def dumps(self, path: str | os.PathLike) -> None:
        path = user_path(path, "path")
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), path / "event_slice_sampler.pt")

    def loads(self, path: str | os.PathLike) -> None:
        self.load_state_dict(torch.load(user_path(path, "path") / "event_slice_sampler.pt"))

    def __repr__(self) -> str:
        n = "?" if self._windows is None else len(self._windows)
        return (f"EventSliceSampler(event_regex={self.query.event_regex!r}, win_len={self.query.win_len}, "
                f"bias={self.query.bias}, windows={n}, replacement={self.replacement})")
