"""``RollingShardSampler``: every row once per epoch, reading only a rolling window of shards at a time.

For datasets whose shards reach the machine through a local cache that holds
only some of them: uniform rows over the whole dataset would touch every
shard all the time, this order touches ``window`` shards at a time.

The order of an epoch (:class:`EpochOrder`):

1. The non-empty shards are put in a random order seeded by ``(seed, epoch)``
   (:func:`shard_order`).
2. The first ``window`` shards of that order are active from time 0. Every
   row of an active shard gets a time: the time its shard entered plus an
   exponential waiting time (mean 1) drawn from a generator seeded by
   ``(seed, epoch, shard)``.
3. Rows come out in time order. When the last row of an active shard has come
   out, the shard retires and the next shard of the order enters, at that
   time.

Exponential waiting times forget how long they have waited, so at every
point each remaining row of the active shards is equally likely to come next:
rows are drawn uniformly, without replacement, from the union of the active
shards' remaining rows, and a shard that enters mixes in as if it had always
been there. At most ``window`` shards are being read at any point.

The sequence depends only on ``(seed, epoch, the shards' row counts,
window)``: never on the batch size, DataLoader workers or DDP ranks. Rank
``r`` of ``W`` takes positions ``r, r + W, r + 2W, ...`` of the global
sequence, so a batch of ``batch_size`` rows per rank consumes
``batch_size * W`` positions, and the state (epoch, position) resumes under
another ``W``. The order is produced one retirement at a time: memory peaks at
about 40 bytes per row of the active shards (16 MB for 8 shards of 50k rows),
time is ``O(rows log rows)`` per epoch (about 7 s for 50M rows).
"""

from __future__ import annotations

import bisect
import logging
import os
from typing import Any

import numpy as np
import torch

from ..compat.torchrl_samplers import SamplerBase
from ..format import FormatError, atomic_write_json, open_regular
from ..format.files import loads_json
from ..validation import int_in_range, nonnegative_int, positive_int, user_path

__all__ = ["STATE_FILE", "EpochOrder", "RollingShardSampler", "shard_order"]

logger = logging.getLogger(__name__)

STATE_FILE = "rolling_shard_sampler.json"  # what dumps(path) writes under path
_MAX_STATE_BYTES = 1 << 16
_STATE_INTS = ("seed", "window", "epoch", "position")


def shard_order(sizes: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """The non-empty shards (ids into ``sizes``) in the seeded order of ``epoch``.

    Example:
        >>> shard_order(np.array([3, 0, 2, 5]), seed=0, epoch=0).tolist()
        [2, 0, 3]
    """
    perm = np.random.default_rng([seed, epoch, 0]).permutation(len(sizes))
    return perm[np.asarray(sizes)[perm] > 0]


class EpochOrder:
    """The global rows of one epoch in the order of the module's rule, produced one retirement at a time.

    Args:
        offsets: the shards' first global rows, int ``[S + 1]`` from 0 (the last
            entry is the epoch's row count).
        window: how many shards are active at once.
        seed, epoch: the generator seeds of the order.

    Example:
        >>> order = EpochOrder(np.array([0, 4, 6, 10]), window=2, seed=0, epoch=0)
        >>> rows = order.take(0, 10)
        >>> sorted(rows.tolist()) == list(range(10))
        True
    """

    def __init__(self, offsets: np.ndarray, window: int, seed: int, epoch: int) -> None:
        offsets = np.asarray(offsets)
        if (offsets.ndim != 1 or offsets.size == 0 or offsets.dtype.kind not in "iu" or offsets[0] != 0
                or np.any(np.diff(offsets) < 0)):
            raise ValueError(f"shard `offsets` must be non-decreasing ints from 0 ([S + 1] first rows), got "
                             f"{offsets[:8].tolist()}{'...' if offsets.size > 8 else ''}")
        self.offsets = offsets.astype(np.int64)
        self.num_rows = int(self.offsets[-1])
        self.window, self.seed, self.epoch = window, seed, epoch
        self.order = shard_order(np.diff(self.offsets), seed, epoch)
        self.ends: list[int] = []  # the position after each retirement, in order
        self._active: list[list[Any]] = []  # [shard, sorted times, global rows in that order, next index]
        self._entered = 0
        self._produced = 0
        self._buf = np.empty(0, np.int64)  # produced rows from position _buf_start on
        self._buf_start = 0
        self._fill(0.0)

    def _fill(self, t: float) -> None:
        while len(self._active) < self.window and self._entered < len(self.order):
            shard = int(self.order[self._entered])
            self._entered += 1
            first, stop = int(self.offsets[shard]), int(self.offsets[shard + 1])
            times = t + np.random.default_rng([self.seed, self.epoch, 1, shard]).standard_exponential(stop - first)
            local = np.argsort(times, kind="stable")
            self._active.append([shard, times[local], local + first, 0])

    def _next_block(self) -> np.ndarray:
        """The rows up to (and including) the next retirement, in time order; then the shards move on."""
        t = min(a[1][-1] for a in self._active)
        times, rows = [], []
        for a in self._active:
            stop = int(np.searchsorted(a[1], t, side="right"))
            times.append(a[1][a[3]:stop])
            rows.append(a[2][a[3]:stop])
            a[3] = stop
        block = np.concatenate(rows)[np.argsort(np.concatenate(times), kind="stable")]
        self._produced += len(block)
        still = [a for a in self._active if a[3] < len(a[1])]
        self.ends.extend([self._produced] * (len(self._active) - len(still)))
        self._active = still
        self._fill(t)
        return block

    def take(self, start: int, count: int) -> np.ndarray:
        """The rows at positions ``[start, start + count)`` (int64); positions before ``start`` are dropped.

        Positions only move forward: ``start`` must be at least the end of the
        previous ``take``. A first ``take`` far into the epoch produces (and
        drops) the rows before it, block by block.
        """
        end = start + count
        if start < self._buf_start or end > self.num_rows:
            raise ValueError(f"positions [{start}, {end}) are outside [{self._buf_start}, {self.num_rows}) of "
                             "this epoch; positions only move forward")
        pieces = [self._buf]
        while self._produced < end:
            block = self._next_block()
            if self._produced <= start:  # before the wanted positions: dropped at once
                pieces, self._buf_start = [], self._produced
            else:
                pieces.append(block)
        buf = np.concatenate(pieces) if pieces else np.empty(0, np.int64)
        buf = buf[start - self._buf_start:]
        self._buf, self._buf_start = buf[count:], end
        return buf[:count]

    def upcoming(self, position: int, n: int) -> np.ndarray:
        """The next ``n`` shards to enter after ``position`` rows (at most; ``position`` must be produced)."""
        entered = min(len(self.order), self.window + bisect.bisect_right(self.ends, position))
        return self.order[entered:entered + n]


class RollingShardSampler(SamplerBase):
    """Every row once per epoch, drawn from a rolling window of ``window`` shards (see the module's rule).

    For a ``ReplayBuffer(storage=ShardedStorage(root), sampler=..., batch_size=B)``:
    each ``rb.sample()`` gives ``B`` rows of this rank. With ``drop_last=False``
    a batch that reaches the end of an epoch is filled from the next epoch;
    with ``drop_last=True`` the last positions of an epoch that cannot fill a
    whole batch (of every rank) are skipped. ``ran_out`` is True after the
    batch that ends an epoch, so ``for batch in rb`` stops there as with
    TorchRL's ``SamplerWithoutReplacement``: with ``drop_last=True`` it yields
    the epoch's whole batches, with ``drop_last=False`` the last one also
    holds the next epoch's first rows.

    After each ``sample``, a storage with a ``will_need(shard_ids)`` method is
    told the next ``window`` shards to enter (:meth:`upcoming_shards`), so it
    can fetch them before they are read.

    Args:
        window: how many shards are read at once (the cache must hold them,
            plus the ones it prefetches).
        seed: seed of every epoch's order.
        drop_last: skip an epoch's last positions that cannot fill a batch.
        rank, world_size: this process's share, given both or neither
            (neither: ``torch.distributed``'s when initialized, else 0 and 1).

    The storage must expose its shards: an ``offsets`` array (the shards'
    first global rows, ``[S + 1]``) on the storage or on its ``reader`` (as
    :class:`~torchrl_ext.storages.ShardedStorage` has). The order of an epoch
    is fixed at its first sample over the rows the storage then holds; rows
    a ``refresh()`` adds join at the next epoch.

    ``state_dict()`` is the epoch and the global position consumed (plus
    ``seed``, ``window``, ``drop_last``, which ``load_state_dict`` takes
    over): every rank saves the same state, and a run resumed under another
    ``world_size`` continues the same global sequence. ``dumps(path)`` writes
    it as ``path/rolling_shard_sampler.json``.

    Example:
        >>> import tempfile
        >>> from torchrl.data import TensorDictReplayBuffer
        >>> from torchrl_ext.storages import ShardedStorage
        >>> from torchrl_ext.synthetic import write_synthetic
        >>> root = write_synthetic(tempfile.mkdtemp() + "/ds", episodes=6, length=10, obs_shape=(1,), shard_rows=8)
        >>> storage = ShardedStorage(root)  # 60 rows in 8 shards
        >>> rb = TensorDictReplayBuffer(storage=storage, sampler=RollingShardSampler(window=2), batch_size=20)
        >>> rows = torch.cat([batch["index"] for batch in rb])  # one epoch: 3 batches, then ran_out
        >>> rows.bincount(minlength=60).eq(1).all().item()
        True
    """

    def __init__(self, window: int, *, seed: int = 0, drop_last: bool = False, rank: int | None = None,
                 world_size: int | None = None) -> None:
        self.window = positive_int(window, "window")
        self.seed = nonnegative_int(seed, "seed")
        if not isinstance(drop_last, (bool, np.bool_)):
            raise TypeError(f"`drop_last` must be a bool, got {drop_last!r} ({type(drop_last).__name__})")
        self.drop_last = bool(drop_last)
        if (rank is None) != (world_size is None):
            raise ValueError(f"`rank` and `world_size` go together: pass both or neither (neither: from "
                             f"torch.distributed), got rank={rank!r}, world_size={world_size!r}")
        self._world_size = positive_int(world_size, "world_size", allow_none=True)
        self._rank = None if rank is None else int_in_range(rank, "rank", 0, self._world_size - 1)
        self._offsets: np.ndarray | None = None  # the last storage's offsets, cut at its row count
        self.reset()

    # ------------------------------------------------------------ shares and shards
    def _share(self) -> tuple[int, int]:
        """``(rank, world_size)``: given, else ``torch.distributed``'s when initialized, else ``(0, 1)``."""
        if self._world_size is not None:
            return self._rank, self._world_size
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def _read_offsets(self, storage: Any) -> np.ndarray:
        offsets = getattr(storage, "offsets", None)
        if offsets is None:
            offsets = getattr(getattr(storage, "reader", None), "offsets", None)
        if offsets is None:
            raise TypeError(f"RollingShardSampler needs a storage with shard offsets (a ShardedStorage, or an "
                            f"`offsets` array of the shards' first rows), got {type(storage).__name__}; sample a "
                            "ShardedStorage, or use TorchRL's SamplerWithoutReplacement for other storages")
        self._offsets = np.minimum(np.asarray(offsets), len(storage))
        return self._offsets

    def _order(self) -> EpochOrder:
        """The current epoch's order, built over the rows of the epoch (fixed at its first sample)."""
        if self._stream is None:
            held = int(self._offsets[-1])
            rows = held if self._epoch_rows is None else self._epoch_rows
            if rows > held:
                raise ValueError(f"epoch {self._epoch} covers {rows} rows but the storage holds {held}; "
                                 "resume with the dataset the state was saved with")
            self._stream = EpochOrder(np.minimum(self._offsets, rows), self.window, self.seed, self._epoch)
            self._epoch_rows = rows
            logger.debug("RollingShardSampler: epoch %d over %d rows in %d shards, from position %d",
                         self._epoch, rows, len(self._stream.order), self._position)
        return self._stream

    def _next_epoch(self) -> None:
        self._epoch += 1
        self._position = 0
        self._epoch_rows = None
        self._stream = None

    def upcoming_shards(self, n: int) -> list[int]:
        """The next ``n`` shards to enter the window, in order (continuing into the next epoch's order).

        The first ``window`` shards of an epoch enter together at its start;
        the shards the current window reads are not listed.
        """
        n = nonnegative_int(n, "n")
        if self._offsets is None:
            raise RuntimeError("the sampler learns the shards at its first sample(storage, batch_size); "
                               "call it first")
        if self._stream is None and self._position == 0:  # an epoch not begun: its rows are not fixed yet
            rows = self._offsets[-1] if self._epoch_rows is None else self._epoch_rows
            ids = shard_order(np.diff(np.minimum(self._offsets, rows)), self.seed, self._epoch)
            ids = ids[self.window:self.window + n].tolist()
        else:
            order = self._order()
            order.take(self._position, 0)  # the retirements up to the position are known
            ids = order.upcoming(self._position, n).tolist()
        if len(ids) < n:
            ids += shard_order(np.diff(self._offsets), self.seed, self._epoch + 1)[:n - len(ids)].tolist()
        return ids

    # ------------------------------------------------------------ sampling
    def sample(self, storage: Any, batch_size: int) -> tuple[torch.Tensor, dict[str, Any]]:
        offsets = self._read_offsets(storage)
        rank, world = self._share()
        span = batch_size * world
        if offsets[-1] == 0:
            raise RuntimeError(f"{type(storage).__name__} holds no rows to sample")
        if self.drop_last and span > offsets[-1]:
            raise ValueError(f"a batch spans batch_size * world_size = {span} rows but the dataset holds "
                             f"{int(offsets[-1])}; lower batch_size or use drop_last=False")
        pieces, taken, ended = [], 0, False
        while taken < span:
            order = self._order()
            left = order.num_rows - self._position
            if self.drop_last and left < span:  # a state saved under a smaller world_size
                self._next_epoch()
                continue
            count = min(span - taken, left)
            pieces.append(order.take(self._position, count)[(rank - taken) % world::world])
            taken += count
            self._position += count
            if self._position == order.num_rows or (self.drop_last and order.num_rows - self._position < span):
                self._next_epoch()
                ended = True
        self._ran_out = ended
        hook = getattr(storage, "will_need", None)
        if callable(hook):
            hook(self.upcoming_shards(self.window))
        return torch.from_numpy(np.concatenate(pieces)), {}

    def sampleable_count(self, storage: Any, batch_size: int) -> int:
        """``len(storage)``; 0 when ``drop_last`` and a batch of every rank needs more rows."""
        n = len(storage)
        return 0 if self.drop_last and n < batch_size * self._share()[1] else n

    @property
    def ran_out(self) -> bool:
        """True after the batch that ended an epoch (``ReplayBuffer.__iter__`` stops there)."""
        return self._ran_out

    @ran_out.setter
    def ran_out(self, value: bool) -> None:  # ReplayBuffer.__iter__ clears it before iterating
        self._ran_out = bool(value)

    @property
    def epoch(self) -> int:
        """The current epoch (the next one as soon as a batch ends an epoch)."""
        return self._epoch

    @property
    def position(self) -> int:
        """Global positions of the current epoch consumed (by every rank together)."""
        return self._position

    # ------------------------------------------------------------ state
    def reset(self) -> None:
        """Back to the start of epoch 0 (``rb.empty()`` calls it)."""
        self._epoch = 0
        self._position = 0
        self._epoch_rows: int | None = None
        self._ran_out = False
        self._stream: EpochOrder | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "window": self.window, "drop_last": self.drop_last, "epoch": self._epoch,
                "position": self._position, "epoch_rows": self._epoch_rows, "ran_out": self._ran_out}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not isinstance(state_dict, dict):
            raise TypeError(f"RollingShardSampler state must be a dict, got {type(state_dict).__name__}")
        missing = sorted((set(_STATE_INTS) | {"drop_last", "epoch_rows"}) - set(state_dict))
        if missing:
            raise ValueError(f"RollingShardSampler state needs keys {missing}; got {sorted(state_dict)}")
        ints = {k: nonnegative_int(state_dict[k], k) for k in _STATE_INTS}
        window = positive_int(ints["window"], "window")
        epoch_rows = nonnegative_int(state_dict["epoch_rows"], "epoch_rows", allow_none=True)
        if ints["position"] > (0 if epoch_rows is None else epoch_rows):
            raise ValueError(f"`position` {ints['position']} is past the epoch's {epoch_rows or 0} rows; "
                             "the state is inconsistent")
        if not isinstance(state_dict["drop_last"], bool):
            raise TypeError(f"`drop_last` must be a bool, got {state_dict['drop_last']!r}")
        self.seed, self.window, self.drop_last = ints["seed"], window, state_dict["drop_last"]
        self._epoch, self._position, self._epoch_rows = ints["epoch"], ints["position"], epoch_rows
        self._ran_out = bool(state_dict.get("ran_out", False))
        self._stream = None

    def dumps(self, path: str | os.PathLike) -> None:
        path = user_path(path, "path")
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path / STATE_FILE, self.state_dict())

    def loads(self, path: str | os.PathLike) -> None:
        file = user_path(path, "path") / STATE_FILE
        with open_regular(file) as f:
            data = f.read(_MAX_STATE_BYTES + 1)
        if len(data) > _MAX_STATE_BYTES:
            raise FormatError(f"{file}: a sampler state is at most {_MAX_STATE_BYTES} bytes, this one is larger; "
                              "it is not a RollingShardSampler state")
        try:
            self.load_state_dict(loads_json(data))
        except (ValueError, TypeError) as err:  # JSONDecodeError is a ValueError
            raise FormatError(f"{file}: not a RollingShardSampler state ({err})") from err

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_stream"] = None  # rebuilt from (epoch, position) on the next sample
        return state

    def __repr__(self) -> str:
        return (f"RollingShardSampler(window={self.window}, seed={self.seed}, drop_last={self.drop_last}, "
                f"epoch={self._epoch}, position={self._position})")
