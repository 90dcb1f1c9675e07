"""The saved index (events/index/): round trips, atomic replacement, corrupt and legacy files."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from torchrl_ext.events import INDEX_DIR, EventIndex
from torchrl_ext.events.index_file import read_index
from torchrl_ext.format import FormatError
from torchrl_ext.storages import ShardedStorage
from torchrl_ext.synthetic import write_synthetic

FIELDS = ("name_id", "episode", "step", "row", "value")


@pytest.fixture
def root(tmp_path):
    return write_synthetic(tmp_path / "ds", episodes=3, length=10, obs_shape=(1,), events_every=4)


def meta_of(root) -> dict:
    return json.loads((root / INDEX_DIR / "meta.json").read_text("utf-8"))


@pytest.mark.parametrize("mmap", [True, False])
def test_load_round_trips_saved_index(root, mmap):
    built = EventIndex.build(root)
    loaded = EventIndex.load(root, mmap=mmap)
    assert loaded.names.tolist() == built.names.tolist() and loaded.source == built.source
    for k in FIELDS:
        np.testing.assert_array_equal(getattr(loaded, k), getattr(built, k))


def test_mmap_load_is_read_only(root):
    EventIndex.build(root)
    with pytest.raises(ValueError, match="read-only"):
        EventIndex.load(root).row[0] = 1


def test_derivations_round_trip_as_json_with_an_equals_sign_in_the_prefix(root):
    EventIndex.build(root, columns={"r=1:x": ("next", "reward")})
    assert meta_of(root)["derived"] == [{"kind": "column", "prefix": "r=1:x", "key": ["next", "reward"]}]
    loaded = EventIndex.load(root)
    assert loaded.derived == [{"kind": "column", "prefix": "r=1:x", "key": ["next", "reward"]}]
    reward = ShardedStorage(root).get(slice(0, 30))["next", "reward"]
    assert loaded.counts()["r=1:x:+1"] == int((reward > 0).sum())


def test_meta_holds_version_source_and_names(root):
    EventIndex.build(root)
    meta = meta_of(root)
    assert (meta["index_version"], meta["num_events"], meta["names"]) == (
        2, 12, ["episode_end", "tick:0", "tick:1", "tick:2"])
    assert meta["source"] == {"logs": ["events/log-000000.npz"], "num_episodes": 3, "num_rows": 30}


def test_save_leaves_no_temporary_directories(root):
    EventIndex.build(root)
    EventIndex.build(root)
    events = root / "events"
    dirs = sorted(p.name for p in events.iterdir() if p.is_dir() and not p.is_symlink())
    assert len(dirs) == 1 and dirs[0].startswith("index-")  # the replaced index is gone
    assert (events / "index").is_symlink() and os.readlink(events / "index") == dirs[0]
    assert not list((root / "shards").glob("*/events*"))


def test_rebuild_replaces_the_index(root):
    EventIndex.build(root)
    EventIndex.build(root, columns={"r": ("next", "reward")})
    assert "r:+1" in EventIndex.load(root).counts()


def test_load_without_index_says_how_to_build(root):
    with pytest.raises(FileNotFoundError, match=r"no event index at .*: torchrl-ext events \S+ --build "
                                                r"\(or EventIndex.build\(root\)\)$"):
        EventIndex.load(root)


def test_unknown_version_is_refused(root):
    EventIndex.build(root)
    (root / INDEX_DIR / "meta.json").write_text('{"index_version": 99}')
    with pytest.raises(FormatError, match=r"expected index_version 2 \(or 1\), got 99; rebuild it with: "
                                          r"torchrl-ext events .* --build"):
        EventIndex.load(root)


@pytest.mark.parametrize("text, match", [
    ("{not json", "not UTF-8 JSON"),
    ("[1, 2]", "expected a JSON object, got list"),
    ('{"index_version": 2, "num_events": -1, "names": []}', r"`num_events` must be an int >= 0, got -1"),
    ('{"index_version": 2, "num_events": 0, "names": ["b", "a"]}', "`names` must be a sorted list of distinct str"),
])
def test_corrupt_meta_is_a_format_error(root, text, match):
    EventIndex.build(root)
    (root / INDEX_DIR / "meta.json").write_text(text)
    with pytest.raises(FormatError, match=match):
        EventIndex.load(root)


@pytest.mark.parametrize("field, value, match", [
    ("derived", ["column:r=next/reward"], r"derivation 'column:r=next/reward' is not \{'kind': 'column'"),
    ("derived", [{"kind": "column", "key": ["next", "reward"]}], r"derivation .* is not"),
    ("source", {"logs": "x"}, r"`source` must be"),
])
def test_malformed_meta_fields_are_format_errors(root, field, value, match):
    EventIndex.build(root)
    meta = meta_of(root)
    meta[field] = value
    (root / INDEX_DIR / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(FormatError, match=match):
        EventIndex.load(root)


def test_truncated_array_reports_byte_counts(root):
    EventIndex.build(root)
    path = root / INDEX_DIR / "row.npy"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(FormatError, match=r"row.npy: expected \d+ bytes for 12 events, found \d+"):
        EventIndex.load(root)


def test_array_of_the_wrong_dtype_is_refused(root):
    EventIndex.build(root)
    np.save(root / INDEX_DIR / "step.npy", np.zeros(12, np.int32))
    with pytest.raises(FormatError, match=r"step.npy: expected int64 \[12\], got int32 \[12\]"):
        EventIndex.load(root)


def test_name_ids_outside_the_vocabulary_are_refused(root):
    EventIndex.build(root)
    np.save(root / INDEX_DIR / "name_id.npy", np.full(12, 7, np.int32))
    with pytest.raises(FormatError, match=r"name_id.npy: ids run from 7 to 7, expected sorted ids in \[0, 4\)"):
        EventIndex.load(root)


def test_index_dir_linking_outside_the_dataset_is_refused(root, tmp_path):
    EventIndex.build(root)
    (root / INDEX_DIR).rename(tmp_path / "elsewhere")
    (root / INDEX_DIR).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FormatError, match="outside the dataset"):
        EventIndex.load(root)


def _write_legacy(root, derived: list[str]) -> None:
    """An index as release 0.1.0 wrote it: index_version 1, top-level logs, string derivations."""
    EventIndex.build(root, columns={"r": ("next", "reward")})
    meta = meta_of(root)
    legacy = {"index_version": 1, "names": meta["names"], "logs": meta["source"]["logs"],
              "num_events": meta["num_events"], "derived": derived}
    (root / INDEX_DIR / "meta.json").write_text(json.dumps(legacy))


@pytest.mark.parametrize("tag, prefix", [("column:r=next/reward", "r"), ("column:a=b=next/reward", "a=b")])
def test_legacy_string_derivations_are_parsed(root, tag, prefix):
    _write_legacy(root, [tag, "counters:info/stats"])
    meta, _ = read_index(root)
    assert meta.version == 1 and meta.source is None
    assert meta.derived == [{"kind": "column", "prefix": prefix, "key": ["next", "reward"]},
                            {"kind": "counters", "key": ["info", "stats"]}]


def test_legacy_tag_that_does_not_parse_is_a_format_error(root):
    _write_legacy(root, ["column:no-key"])
    with pytest.raises(FormatError, match=r"derivation 'column:no-key' of an index_version 1 is neither"):
        read_index(root)


def test_rebuild_with_a_relative_root_leaves_only_the_live_index(root, monkeypatch):
    monkeypatch.chdir(root.parent)
    EventIndex.build(root.name)
    first = os.readlink(root / INDEX_DIR)
    EventIndex.rebuild(root.name)
    live = os.readlink(root / INDEX_DIR)
    assert live != first and [p.name for p in (root / "events").glob("index-*")] == [live]
