"""EventIndex: built from the writer's logs, derived from columns and counters, argument errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchrl_ext.encodings import Zstd, chunk_file_paths
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
    ({"x": ("no", "such")}, (r"`columns` maps 'x' to 'no/such', which is not a column of the dataset; columns: "
                             r"\[.*'next/reward'.*\]")),
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


@pytest.fixture
def frames_root(tmp_path):
    """Frames next to a signed reward and a counter, every column zstd-encoded: 4 episodes over 3 shards."""
    encodings = {"observation": Zstd(chunk_rows=4), ("next", "reward"): Zstd(chunk_rows=4),
                 ("info", "stats", "kills"): Zstd(chunk_rows=4)}
    rng = np.random.default_rng(0)
    with ShardWriter.create(tmp_path / "ds", shard_rows=12, encodings=encodings) as w:
        for e, length in enumerate((9, 5, 12, 7)):
            ep = make_episode(e, length, (16, 16))
            ep["next", "reward"] = torch.from_numpy(rng.integers(-2, 3, (length, 1)).astype(np.float32))
            ep["info", "stats", "kills"] = torch.from_numpy(np.cumsum(rng.integers(0, 2, length)))
            w.add_episode(ep)
    return tmp_path / "ds"


def _events_of(index, prefix=""):
    return sorted((str(index.names[n]), int(e), int(s), int(r), float(v)) for n, e, s, r, v in
                  zip(index.name_id, index.episode, index.step, index.row, index.value)
                  if str(index.names[n]).startswith(prefix))


def _naive_derived(root):
    """Sign and counter events from every row of the dataset, one row at a time."""
    rows = ShardedStorage(root)[:]
    episode, step = rows["episode"].tolist(), rows["step"].tolist()
    reward, kills = rows["next", "reward"].reshape(-1).tolist(), rows["info", "stats", "kills"].tolist()
    signs, counters = [], []
    for r in range(len(rows)):
        if reward[r] != 0:
            signs.append(("r:+1" if reward[r] > 0 else "r:-1", episode[r], step[r], r, reward[r]))
        if step[r] > 0 and kills[r] > kills[r - 1]:
            counters.append(("kills", episode[r], step[r], r, float(kills[r] - kills[r - 1])))
    return sorted(signs), sorted(counters)


def _damage_frames(root) -> None:
    """Zeroes every chunk of the frame column, sizes kept: opening still works, reading any frame fails its crc32."""
    for shard in read_manifest(root).shards:
        chunks, _ = chunk_file_paths(root / shard.dir, ("observation",))
        chunks.chmod(0o644)
        chunks.write_bytes(bytes(chunks.stat().st_size))


@pytest.mark.parametrize("kwargs", [{"columns": {"r": ("next", "reward")}}, {"counters": [("info", "stats")]}],
                         ids=["columns", "counters"])
def test_build_derivations_never_read_the_frames(frames_root, kwargs):
    signs, counters = _naive_derived(frames_root)
    expected = signs if "columns" in kwargs else counters
    _damage_frames(frames_root)
    with pytest.raises(FormatError, match=r"fails its crc32 check"):
        ShardedStorage(frames_root)[:]  # any read of a frame fails now
    assert _events_of(EventIndex.build(frames_root, save=False, **kwargs)) == expected


def test_build_derivations_equal_a_reference_over_every_row(frames_root):
    signs, counters = _naive_derived(frames_root)
    index = EventIndex.build(frames_root, columns={"r": ("next", "reward")}, counters=[("info", "stats")],
                             save=False)
    assert _events_of(index, "r:") == signs and _events_of(index, "kills") == counters
    assert len(signs) > 10 and len(counters) > 5


@pytest.mark.parametrize("chunk_rows", [1, 5, 64])
def test_derivations_read_their_column_chunk_rows_at_a_time(frames_root, monkeypatch, chunk_rows):
    storage = ShardedStorage(frames_root)
    calls = []
    gather = storage.reader.gather

    def spy(flat, keys=None):
        calls.append((len(flat), None if keys is None else sorted(map(tuple, keys))))
        return gather(flat, keys)

    monkeypatch.setattr(storage.reader, "gather", spy)
    signs, counters = _naive_derived(frames_root)
    assert _events_of(EventIndex.from_column(storage, prefix="r", chunk_rows=chunk_rows)) == signs
    assert _events_of(EventIndex.from_counters(storage, chunk_rows=chunk_rows)) == counters
    assert max(n for n, _ in calls) == min(chunk_rows, len(storage))
    assert {k for _, keys in calls for k in keys} == {("next", "reward"), ("info", "stats", "kills")}
    assert all(len(keys) == 1 for _, keys in calls)


def test_derived_next_key_rebuilt_from_the_following_row_reads_only_its_column(tmp_path):
    with ShardWriter.create(tmp_path / "ds", shard_rows=6, encodings={"observation": Zstd(chunk_rows=2),
                                                                       "score": Zstd(chunk_rows=2)}) as w:
        for e, values in enumerate(([0, 2, 0, -1], [3, 0, -4])):
            ep = make_episode(e, len(values), (8, 8))
            score = torch.tensor(values + [5 * (e + 1)], dtype=torch.float32)  # the last is the final value
            ep["score"], ep["next", "score"] = score[:-1], score[1:]
            w.add_episode(ep)
    assert read_manifest(tmp_path / "ds").next_from_row == [("observation",), ("score",)]
    _damage_frames(tmp_path / "ds")
    index = EventIndex.build(tmp_path / "ds", columns={"s": ("next", "score")}, save=False)
    assert _events_of(index) == [("s:+1", 0, 0, 0, 2.0), ("s:+1", 0, 3, 3, 5.0), ("s:+1", 1, 2, 6, 10.0),
                                 ("s:-1", 0, 2, 2, -1.0), ("s:-1", 1, 1, 5, -4.0)]
