"""Index routing against a naive per-row reference (Hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from torchrl_ext.storages.routing import gather, route


def _naive(shards: list[np.ndarray], idx: np.ndarray) -> np.ndarray:
    flat = np.concatenate(shards)
    return np.stack([flat[i] for i in idx]) if idx.size else flat[:0]


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=12),
    data=st.data(),
)
def test_gather_matches_naive(sizes, data):
    offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    shards = [np.arange(o, o + n, dtype=np.int64)[:, None] * [1, -1] for o, n in zip(offsets, sizes)]
    total = int(offsets[-1])
    idx = np.asarray(data.draw(st.lists(st.integers(0, total - 1), max_size=40)), dtype=np.int64)
    out = np.empty((idx.size, 2), dtype=np.int64)
    gather(shards, route(offsets, idx), out)
    np.testing.assert_array_equal(out, _naive(shards, idx))
    np.testing.assert_array_equal(out[:, 0], idx)


def test_single_shard_route_keeps_request_order():
    offsets = np.array([0, 5, 10], dtype=np.int64)
    r = route(offsets, np.array([9, 7, 8]))
    assert r.single == 1
    np.testing.assert_array_equal(r.local, [4, 2, 3])


def test_multi_shard_route_groups_once_per_shard():
    offsets = np.array([0, 5, 10, 15], dtype=np.int64)
    r = route(offsets, np.array([11, 0, 12, 4, 6]))
    assert r.single == -1
    np.testing.assert_array_equal(r.shards, [0, 1, 2])
    np.testing.assert_array_equal(r.bounds, [0, 2, 3, 5])


@settings(max_examples=150, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 60), min_size=1, max_size=6),
    starts=st.lists(st.integers(0, 10_000), min_size=1, max_size=4),
    run=st.integers(1, 40),
)
def test_runs_of_consecutive_rows_match_naive(sizes, starts, run):
    offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    total = int(offsets[-1])
    shards = [np.arange(o, o + n, dtype=np.int64)[:, None] * [1, 3] for o, n in zip(offsets, sizes)]
    idx = np.concatenate([np.arange(s % total, min(s % total + run, total)) for s in starts]).astype(np.int64)
    out = np.empty((idx.size, 2), dtype=np.int64)
    gather(shards, route(offsets, idx), out)
    np.testing.assert_array_equal(out, _naive(shards, idx))
