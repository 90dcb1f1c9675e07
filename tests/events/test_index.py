"""EventIndex: built from the writer's logs, saved atomically, derived from columns and counters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchrl_ext.events import INDEX_DIR, EventIndex
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
    index = EventIndex.build(root)
    got = [(str(index.names[n]), int(e), int(s), int(r), float(v)) for n, e, s, r, v in
           zip(index.name_id, index.episode, index.step, index.row, index.value)]
    assert got == [
        ("craft", 1, 4, 10, 1.5), ("craft", 2, 2, 14, 3.0),
        ("minecraft.mine_block:oak", 0, 3, 3, 1.0), ("minecraft.mine_block:oak", 1, 0, 6, 5.0),
        ("reward:+1", 0, 1, 1, 2.0),
    ]
    assert index.offsets.tolist() == [0, 2, 4, 5]


def test_load_round_trips_saved_index(root):
    built = EventIndex.build(root)
    loaded = EventIndex.load(root)
    assert loaded.names.tolist() == built.names.tolist()
    for k in ("name_id", "episode", "step", "row", "value"):
        np.testing.assert_array_equal(getattr(loaded, k), getattr(built, k))


def test_save_leaves_no_temporary_directories(root):
    EventIndex.build(root)
    EventIndex.build(root)
    assert sorted(p.name for p in (root / "events").iterdir() if p.is_dir()) == ["index"]
    assert not list((root / "shards").glob("*/events*"))


def test_load_without_index_says_how_to_build(root):
    with pytest.raises(FileNotFoundError, match=r"no event index at .*EventIndex.build"):
        EventIndex.load(root)


def test_open_rebuilds_after_new_events(root):
    EventIndex.build(root)
    with ShardWriter.open(root) as w:
        w.add_episode(make_episode(3, 6, (1,)), events=[(5, "craft", 9.0)])
    index = EventIndex.open(root)
    assert index.counts() == {"craft": 3, "minecraft.mine_block:oak": 2, "reward:+1": 1}


def test_from_column_reward_sign(tmp_path):
    with ShardWriter.create(tmp_path / "ds") as w:
        ep = make_episode(0, 5, (1,))
        ep["next", "reward"] = torch.tensor([[0.0], [1.0], [-2.0], [0.0], [0.5]])
        w.add_episode(ep)
    index = EventIndex.from_column(ShardedStorage(tmp_path / "ds"))
    got = [(str(index.names[n]), int(s), float(v)) for n, s, v in zip(index.name_id, index.step, index.value)]
    assert got == [("reward:+1", 1, 1.0), ("reward:+1", 4, 0.5), ("reward:-1", 2, -2.0)]


def test_from_counters_positive_deltas(tmp_path):
    with ShardWriter.create(tmp_path / "ds") as w:
        for e, counts in enumerate(([0, 0, 1, 1, 3], [2, 2, 2, 5, 4])):
            ep = make_episode(e, 5, (1,))
            ep["info", "stats", "minecraft.mine_block:minecraft.oak_log"] = torch.tensor(counts, dtype=torch.int64)
            w.add_episode(ep)
    index = EventIndex.from_counters(ShardedStorage(tmp_path / "ds"))
    got = [(int(e), int(s), float(v)) for e, s, v in zip(index.episode, index.step, index.value)]
    assert index.names.tolist() == ["minecraft.mine_block:minecraft.oak_log"]
    assert got == [(0, 2, 1.0), (0, 4, 2.0), (1, 3, 3.0)]


def test_merge_then_save_keeps_both_sources(root):
    derived = EventIndex.from_column(ShardedStorage(root), prefix="r")
    merged = EventIndex.build(root, save=False).merge(derived)
    merged.save(root)
    counts = EventIndex.load(root).counts()
    assert counts["craft"] == 2 and counts["r:+1"] == 17 and counts["reward:+1"] == 1


def test_synthetic_events_every(tmp_path):
    root = write_synthetic(tmp_path / "ds", episodes=3, length=10, obs_shape=(1,), events_every=4)
    assert EventIndex.build(root).counts() == {"episode_end": 3, "tick:0": 3, "tick:1": 3, "tick:2": 3}


def test_corrupt_meta_version_is_refused(root):
    EventIndex.build(root)
    (root / INDEX_DIR / "meta.json").write_text('{"index_version": 99}')
    with pytest.raises(ValueError, match="expected index_version 1, got 99"):
        EventIndex.load(root)


def test_build_with_columns_and_open_rebuilds_them(root):
    EventIndex.build(root, columns={"r": ("next", "reward")})
    with ShardWriter.open(root) as w:
        w.add_episode(make_episode(3, 6, (1,)), events=[(5, "craft", 9.0)])
    counts = EventIndex.open(root).counts()
    assert counts["craft"] == 3 and counts["r:+1"] == 23
