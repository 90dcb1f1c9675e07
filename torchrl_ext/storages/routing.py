"""Index routing over sharded columns: global rows -> (shard, local row), batched.

Cost is ``O(B log S)`` for a batch of ``B`` rows over ``S`` shards: one
``searchsorted`` over shard offsets, one stable argsort of the shard ids, then
one gather per touched shard. No ``(S x B)`` matrix is ever built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Route", "route", "gather"]


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


def gather(maps: list[np.ndarray], r: Route, out: np.ndarray) -> np.ndarray:
    """Copies the routed rows of per-shard arrays ``maps`` into ``out`` (request order)."""
    if r.single >= 0:
        np.take(maps[r.single], r.local, axis=0, out=out)
        return out
    order, local, bounds = r.order, r.local, r.bounds
    for g, shard in enumerate(r.shards.tolist()):
        a, b = bounds[g], bounds[g + 1]
        if b - a == 1:  # common with many shards: a plain row copy beats fancy indexing
            out[order[a]] = maps[shard][local[a]]
        else:
            out[order[a:b]] = maps[shard][local[a:b]]
    return out
