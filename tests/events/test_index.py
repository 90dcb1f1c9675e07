"""EventIndex: built from the writer's logs, derived from columns and counters, argument errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchrl_ext.events import EventIndex
from torchrl_ext.format import FormatError, read_manifest
from torchrl_ext.storages import ShardedStorage
from torchrl_ext.synthetic import make_episode, write_synthetic
from torchrl_ext.writer import ShardWriter

EVENTS = {
    0: [(3, "minecraft.mine_block:oak", 1.0), (1, "reward:+1", 2.0)],
    1: [(0, "minecraft.mine_block:oak", 5.0), (4, "craft", 1.5)],
    2: [(2, "craft", 3.0)],
}


@pytest.fixture
def root(tmp_path):
    with ShardWriter.create(tmp_path / "ds", shard_rows=7) as w:
        for e in range(3):
            w.add_episode(make_episode(e, 6, (1,)), events=EVENTS[e])
    return tmp_path / "ds"


def test_build_sorts_by_name_then_dataset_order(root):
    index = EventIndex.build(root, save=False)
    got = [(str(index.names[n]), int(e), int(s), int(r), float(v)) for n, e, s, r, v in
           zip(index.name_id, index.episode, index.step, index.row, index.value)]
    assert got == [
        ("craft", 1, 4, 10, 1.5), ("craft", 2, 2, 14, 3.0),
        ("minecraft.mine_block:oak", 0, 3, 3, 1.0), ("minecraft.mine_block:oak", 1, 0, 6, 5.0),
        ("reward:+1", 0, 1, 1, 2.0),
    ]
    assert index.offsets.tolist() == [0, 2, 4, 5]


def test_build_records_the_manifest_state(root):
    m = read_manifest(root)
    source = EventIndex.build(root, save=False).source
    assert (list(source.logs), source.num_episodes, source.num_rows) == (m.event_logs, 3, 18)


def test_build_with_save_false_writes_nothing(root):
    EventIndex.build(root, save=False)
    assert not (root / "events" / "index").exists()


def test_corrupt_event_log_is_a_format_error(root):
    (root / read_manifest(root).event_logs[0]).write_bytes(b"not an npz")
    with pytest.raises(FormatError, match=r"event log is unreadable"):
        EventIndex.build(root)


def test_from_column_reward_sign(tmp_path):
    with ShardWriter.create(tmp_path / "ds") as w:
        ep = make_episode(0, 5, (1,))
        ep["next", "reward"] = torch.tensor([[0.0], [1.0], [-2.0], [0.0], [0.5]])
        w.add_episode(ep)
    index = EventIndex.from_column(ShardedStorage(tmp_path / "ds"))
    got = [(str(index.names[n]), int(s), float(v)) for n, s, v in zip(index.name_id, index.step, index.value)]
    assert got == [("reward:+1", 1, 1.0), ("reward:+1", 4, 0.5), ("reward:-1", 2, -2.0)]


def test_from_column_reads_in_chunks_like_at_once(root):
    storage = ShardedStorage(root)
    whole = EventIndex.from_column(storage, prefix="r")
    chunked = EventIndex.from_column(storage, prefix="r", chunk_rows=4)
    assert chunked.row.tolist() == whole.row.tolist() and chunked.value.tolist() == whole.value.tolist()


def _counter_dataset(tmp_path):
    with ShardWriter.create(tmp_path / "ds") as w:
        for e, counts in enumerate(([0, 0, 1, 1, 3], [2, 2, 2, 5, 4])):
            ep = make_episode(e, 5, (1,))
            ep["info", "stats", "minecraft.mine_block:minecraft.oak_log"] = torch.tensor(counts, dtype=torch.int64)
            w.add_episode(ep)
    return ShardedStorage(tmp_path / "ds")


@pytest.mark.parametrize("chunk_rows", [1 << 20, 3])
def test_from_counters_positive_deltas(tmp_path, chunk_rows):
    index = EventIndex.from_counters(_counter_dataset(tmp_path), chunk_rows=chunk_rows)
    got = [(int(e), int(s), float(v)) for e, s, v in zip(index.episode, index.step, index.value)]
    assert index.names.tolist() == ["minecraft.mine_block:minecraft.oak_log"]
    assert got == [(0, 2, 1.0), (0, 4, 2.0), (1, 3, 3.0)]


def test_build_with_counters_records_the_derivation(tmp_path):
    _counter_dataset(tmp_path)
    index = EventIndex.build(tmp_path / "ds", counters=[("info", "stats")], save=False)
    assert index.derived == [{"kind": "counters", "key": ["info", "stats"]}]
    assert index.counts() == {"minecraft.mine_block:minecraft.oak_log": 3}


def test_merge_keeps_both_sources(root):
    derived = EventIndex.from_column(ShardedStorage(root), prefix="r")
    merged = EventIndex.build(root, save=False).merge(derived)
    counts = merged.counts()
    assert (counts["craft"], counts["r:+1"], counts["reward:+1"]) == (2, 17, 1)
    assert merged.derived == [{"kind": "column", "prefix": "r", "key": ["next", "reward"]}]


def test_synthetic_events_every(tmp_path):
    root = write_synthetic(tmp_path / "ds", episodes=3, length=10, obs_shape=(1,), events_every=4)
    assert EventIndex.build(root, save=False).counts() == {"episode_end": 3, "tick:0": 3, "tick:1": 3, "tick:2": 3}


def test_from_arrays_refuses_ids_outside_names():
    with pytest.raises(ValueError, match=r"`name_id` must be in \[0, 1\)"):
        EventIndex.from_arrays(["a"], [1], [0], [0], [0])


@pytest.mark.parametrize("columns, match", [
    ({"x": ("no", "such")}, r"`columns` maps 'x' to 'no/such', which is not a column of the dataset; columns: "
                            r"\[.*'next/reward'.*\]"),
    ({"x": "observation"}, r"`columns` key 'observation' must hold one value per row, found per-row shape \[2\]"),
])
def test_build_refuses_columns_that_do_not_exist(tmp_path, columns, match):
    root = write_synthetic(tmp_path / "ds", episodes=1, length=4, obs_shape=(2,))
    with pytest.raises(ValueError, match=match):
        EventIndex.build(root, columns=columns)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"columns": ["reward"]}, TypeError, r"`columns` must map an event prefix to a column key"),
    ({"columns": {"r": 3}}, TypeError, r"`columns\['r'\]` must be a str or a sequence of str"),
    ({"columns": {"r": ()}}, ValueError, r"`columns\['r'\]` must be a non-empty key"),
    ({"counters": "info"}, TypeError, r"`counters` must be a list of key prefixes"),
    ({"counters": [("info", "nothing")]}, ValueError, r"`counters` prefix 'info/nothing' has no column under it"),
])
def test_build_argument_errors_name_the_argument(root, kwargs, error, match):
    with pytest.raises(error, match=match):
        EventIndex.build(root, **kwargs)


def test_bad_columns_are_refused_before_anything_is_written(root):
    with pytest.raises(ValueError, match=r"`columns` maps 'x'"):
        EventIndex.build(root, columns={"x": ("no", "such")})
    assert not (root / "events" / "index").exists()


def test_match_refuses_a_bad_regex(root):
    with pytest.raises(ValueError, match=r"`event_regex` must be a valid Python regular expression, got 'a\('"):
        EventIndex.build(root, save=False).match("a(")


def test_counts_sum_to_len(root):
    index = EventIndex.build(root, save=False)
    assert sum(index.counts().values()) == len(index) == 5
    assert np.diff(index.offsets).tolist() == [2, 2, 1]


@settings(max_examples=200, deadline=None)
@given(events=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 30)), max_size=60), presorted=st.booleans())
def test_from_arrays_orders_by_name_then_row_like_sorted(events, presorted):
    if presorted:
        events = sorted(events, key=lambda e: e[1])
    names = ["e", "d", "c", "b", "a"]  # unsorted vocabulary: ids are remapped
    index = EventIndex.from_arrays(names, [n for n, _ in events], [0] * len(events), [r for _, r in events],
                                   [r for _, r in events], np.arange(len(events), dtype=np.float64))
    expected = sorted(((names[n], r, i) for i, (n, r) in enumerate(events)))
    got = [(str(index.names[g]), int(r), int(v)) for g, r, v in zip(index.name_id, index.row, index.value)]
    assert got == expected


def test_from_arrays_with_more_names_than_a_radix_pass_orders_the_same():
    names = [f"n{k:05d}" for k in range(70_000)]
    ids = np.asarray([69_999, 3, 69_999, 3, 40_000])
    rows = np.asarray([5, 9, 1, 2, 7])
    index = EventIndex.from_arrays(names, ids, np.zeros(5), rows, rows)
    assert [(int(g), int(r)) for g, r in zip(index.name_id, index.row)] == [(3, 2), (3, 9), (40_000, 7),
                                                                           (69_999, 1), (69_999, 5)]
