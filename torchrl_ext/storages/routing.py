"""Index routing over sharded columns: global rows -> (shard, local row), batched.

Cost is ``O(B log S)`` for a batch of ``B`` rows over ``S`` shards: one
``searchsorted`` over shard offsets, one stable argsort of the shard ids, then
one gather per touched shard. No ``(S x B)`` matrix is ever built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Route", "gather", "index_rows", "route"]


def index_rows(index: Any, n: int) -> np.ndarray:
    """Normalises an index over ``n`` rows to int64 rows of the same shape.

    Accepts an int (negative counts from the end), a slice or range, a
    sequence, a bool mask of shape ``(n,)``, a numpy array or anything with
    ``.numpy()`` (a CPU tensor).
    """
    if isinstance(index, tuple):
        if len(index) != 1:
            raise IndexError(f"the dataset is 1-D; expected one index, got a tuple of {len(index)}")
        index = index[0]
    if isinstance(index, slice):
        return np.arange(*index.indices(n), dtype=np.int64)
    if hasattr(index, "detach"):
        index = index.detach().cpu().numpy()
    idx = np.asarray(index, dtype=np.int64) if isinstance(index, range) else np.asarray(index)
    if idx.dtype == np.bool_:
        if idx.shape != (n,):
            raise IndexError(f"a boolean index must have shape ({n},), got {idx.shape}")
        return np.flatnonzero(idx)
    if idx.size == 0:
        return idx.astype(np.int64)
    if not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"a row index must be integers, got dtype {idx.dtype}")
    idx = idx.astype(np.int64, copy=True)
    neg = idx < 0
    if neg.any():
        idx[neg] += n
    if idx.min() < 0 or idx.max() >= n:
        bad = np.asarray(index)[(idx < 0) | (idx >= n)].ravel()[0]
        raise IndexError(f"index {int(bad)} is out of range for a storage of {n} rows (valid: [-{n}, {n}))")
    return idx


@dataclass(frozen=True)
class Route:
    """Where each requested row lives.

    ``single`` is the shard id when every row lives in one shard (then
    ``local`` is in request order); otherwise rows are grouped by shard:
    ``order`` sorts requests by shard, ``bounds`` delimit the groups inside
    ``order`` and ``shards`` names the shard of each group.
    """

    local: np.ndarray
    single: int
    order: np.ndarray | None = None
    bounds: np.ndarray | None = None
    shards: np.ndarray | None = None


def route(offsets: np.ndarray, idx: np.ndarray) -> Route:
    """Routes global row indices ``idx`` (int64, in range) through ``offsets`` (``[S+1]``)."""
    if offsets.shape[0] == 2 or idx.size == 0:
        return Route(local=idx - offsets[0], single=0)
    shard = np.searchsorted(offsets, idx, side="right") - 1
    first = shard[0]
    if (shard == first).all():
        return Route(local=idx - offsets[first], single=int(first))
    order = np.argsort(shard, kind="stable")
    sorted_shard = shard[order]
    cuts = np.flatnonzero(sorted_shard[1:] != sorted_shard[:-1]) + 1
    bounds = np.concatenate(([0], cuts, [idx.size]))
    local = idx[order] - offsets[sorted_shard]
    return Route(local=local, single=-1, order=order, bounds=bounds, shards=sorted_shard[bounds[:-1]])


_MIN_RUN = 16  # average run length from which slice copies beat a fancy-index gather
_ROWS_PER_SHARD_FOR_TAKE = 5  # rows per touched shard from which one gather per shard beats row copies


def _runs(local: np.ndarray, dest: np.ndarray | None = None) -> np.ndarray | None:
    """Bounds of runs that are consecutive in ``local`` (and in ``dest`` when given),
    or None when runs are too short to pay off."""
    n = local.shape[0]
    if n < _MIN_RUN:
        return None
    step = local[1:] - local[:-1] != 1
    if dest is not None:
        step |= dest[1:] - dest[:-1] != 1
    breaks = np.flatnonzero(step) + 1
    if (breaks.shape[0] + 1) * _MIN_RUN > n:
        return None
    return np.concatenate(([0], breaks, [n]))


def gather(maps: list[np.ndarray], r: Route, out: np.ndarray) -> np.ndarray:
    """Copies the routed rows of per-shard arrays ``maps`` into ``out`` (request order).

    One shard, or requests already in shard order: one ``take`` per touched
    shard straight into ``out`` (one copy per row). Otherwise each shard's
    rows are gathered, then put in request order; few rows per shard: one
    row copy each. Requests made of long runs of consecutive rows
    (windows, slices) are copied run by run with plain slices. A ``take``
    into ``out`` uses ``mode="clip"`` (the rows are in range): in its default
    mode numpy buffers it, copying every row twice.
    """
    if r.single >= 0:
        src = maps[r.single]
        runs = _runs(r.local)
        if runs is None:
            np.take(src, r.local, axis=0, out=out, mode="clip")
        else:
            for a, b in zip(runs[:-1].tolist(), runs[1:].tolist()):
                first = int(r.local[a])
                out[a:b] = src[first:first + b - a]
        return out
    order, local, bounds = r.order, r.local, r.bounds
    if _ROWS_PER_SHARD_FOR_TAKE * r.shards.shape[0] > local.shape[0]:
        # Few rows per shard (random rows over many shards): one Python step per row, with plain
        # ints, costs less than a few numpy calls per shard.
        sizes = np.diff(bounds)
        shard_of = np.repeat(r.shards, sizes).tolist()
        for dst, shard, row in zip(order.tolist(), shard_of, local.tolist()):
            out[dst] = maps[shard][row]
        return out
    in_order = bool((order[1:] > order[:-1]).all())  # rows asked in shard order (sorted rows)
    bounds_l, shards_l = bounds.tolist(), r.shards.tolist()
    for g, shard in enumerate(shards_l):
        a, b = bounds_l[g], bounds_l[g + 1]
        src = maps[shard]
        if b - a == 1:  # common with many shards: a plain row copy beats fancy indexing
            out[order[a]] = src[local[a]]
            continue
        runs = _runs(local[a:b], order[a:b])
        if runs is None:
            if in_order:
                np.take(src, local[a:b], axis=0, out=out[a:b], mode="clip")
            else:  # numpy's fastest for scattered destinations: gather, then scatter
                out[order[a:b]] = src[local[a:b]]
            continue
        for p, q in zip(runs[:-1].tolist(), runs[1:].tolist()):
            first, dest = int(local[a + p]), int(order[a + p])
            out[dest:dest + q - p] = src[first:first + q - p]
    return out
