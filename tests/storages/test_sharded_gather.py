"""Raw columns over many shards: one copy per row when the rows come in shard order, any order otherwise."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torchrl_ext.storages import ShardReader
from torchrl_ext.storages.routing import gather, route
from torchrl_ext.synthetic import obs_value, write_synthetic


def _shards(sizes: list[int]) -> tuple[np.ndarray, list[np.ndarray]]:
    offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    return offsets, [np.arange(o, o + n, dtype=np.int64)[:, None] * [1, -1, 2] for o, n in zip(offsets, sizes)]


@settings(max_examples=150, deadline=None)
@given(sizes=st.lists(st.integers(1, 9), min_size=2, max_size=12), data=st.data(),
       kind=st.sampled_from(["sorted", "sorted with repeats", "any"]))
def test_rows_in_shard_order_and_any_order_match_naive(sizes, data, kind):
    offsets, shards = _shards(sizes)
    total = int(offsets[-1])
    rows = data.draw(st.lists(st.integers(0, total - 1), max_size=60))
    if kind == "sorted":
        rows = sorted(set(rows))
    elif kind == "sorted with repeats":
        rows = sorted(rows + rows[: len(rows) // 2])
    idx = np.asarray(rows, np.int64)
    out = np.full((idx.size, 3), -7, np.int64)
    gather(shards, route(offsets, idx), out)
    np.testing.assert_array_equal(out, np.concatenate(shards)[idx] if idx.size else out)


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    root = write_synthetic(tmp_path_factory.mktemp("g") / "ds", episodes=6, length=(4, 12), obs_shape=(3, 2),
                           shard_rows=5)
    return ShardReader(root, cache_bytes=0)


def test_gather_column_into_a_given_array_with_repeats(reader):
    rows = np.array([0, 0, 7, 3, 29, 7, 12])
    out = np.full((rows.size, 3, 2), 255, np.uint8)
    got = reader.gather_column(("observation",), rows, out)
    assert got is out
    episode = np.searchsorted(reader.ep_first, rows, side="right") - 1
    expected = obs_value(episode, rows - reader.ep_first[episode])
    np.testing.assert_array_equal(out, np.broadcast_to(expected[:, None, None], out.shape))

