"""EventIndex.open and every reader on top of it: up-to-date, missing, stale, legacy; never a write."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from helpers import tree_snapshot

from torchrl_ext.events import INDEX_DIR, EventIndex, EventWindowDataset, WindowQuery
from torchrl_ext.format import FormatError
from torchrl_ext.samplers import EventSliceSampler
from torchrl_ext.synthetic import make_episode, write_synthetic
from torchrl_ext.writer import ShardWriter

QUERY = WindowQuery(event_regex="tick:.*", win_len=4)


@pytest.fixture
def root(tmp_path):
    return write_synthetic(tmp_path / "ds", episodes=3, length=20, obs_shape=(1,), events_every=5)


def add_episode(root, events=((3, "craft", 1.0),)):
    with ShardWriter.open(root) as w:
        w.add_episode(make_episode(3, 20, (1,)), events=list(events))


def make_stale(root):
    EventIndex.build(root, columns={"r": ("next", "reward")})
    add_episode(root)


def make_legacy(root):
    EventIndex.build(root)
    meta = json.loads((root / INDEX_DIR / "meta.json").read_text())
    legacy = {"index_version": 1, "names": meta["names"], "logs": meta["source"]["logs"],
              "num_events": meta["num_events"], "derived": ["column:r=next/reward"]}
    (root / INDEX_DIR / "meta.json").write_text(json.dumps(legacy))


OPENERS = {
    "EventIndex.open": lambda root: EventIndex.open(root),
    "EventSliceSampler": lambda root: EventSliceSampler(root, QUERY),
    "EventWindowDataset": lambda root: EventWindowDataset(root, QUERY),
}
STATES = {"missing": lambda root: None, "stale": make_stale, "legacy": make_legacy}


def test_up_to_date_index_is_loaded_without_warning(root, recwarn):
    EventIndex.build(root)
    index = EventIndex.open(root)
    assert index.counts()["tick:0"] == 6 and not [w for w in recwarn if "event index" in str(w.message)]


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("opener", OPENERS)
def test_opening_never_writes(root, opener, state):
    STATES[state](root)
    before = tree_snapshot(root)
    with pytest.warns(UserWarning, match=r"built it in memory for this process \(nothing is written\)"):
        OPENERS[opener](root)
    assert tree_snapshot(root) == before


def test_missing_index_warning_names_the_command(root):
    with pytest.warns(UserWarning, match=r"event index of .* is missing: .*: torchrl-ext events \S+ --build$"):
        index = EventIndex.open(root)
    assert index.counts() == EventIndex.build(root, save=False).counts()


def test_stale_index_is_rebuilt_in_memory_with_its_derivations(root):
    make_stale(root)
    with pytest.warns(UserWarning, match=r"is stale \(built from 1 event logs, 3 episodes, 60 rows; the dataset now "
                                         r"has 2 event logs, 4 episodes, 80 rows\).* --build --column r next/reward$"):
        index = EventIndex.open(root)
    counts = index.counts()
    assert (counts["craft"], counts["r:+1"]) == (1, EventIndex.build(root, columns={"r": "next/reward".split("/")},
                                                                      save=False).counts()["r:+1"])


def test_new_rows_without_events_make_a_derived_index_stale(root):
    EventIndex.build(root, columns={"r": ("next", "reward")})
    add_episode(root, events=())
    with pytest.warns(UserWarning, match=r"is stale .*80 rows"):
        index = EventIndex.open(root)
    assert index.row.max() >= 60


def test_legacy_index_is_rebuilt_with_its_parsed_derivations(root):
    make_legacy(root)
    with pytest.warns(UserWarning, match=r"is stale \(written by an older release, index_version 1\).*--column r "
                                         r"next/reward$"):
        index = EventIndex.open(root)
    assert index.derived == [{"kind": "column", "prefix": "r", "key": ["next", "reward"]}]


def test_missing_index_with_error_mode_raises_file_not_found(root):
    with pytest.raises(FileNotFoundError, match=r"event index of .* is missing; build it with: torchrl-ext events "
                                                r"\S+ --build$"):
        EventIndex.open(root, build_missing="error")


def test_stale_index_with_error_mode_raises_format_error(root):
    make_stale(root)
    with pytest.raises(FormatError, match=r"is stale .*; build it with: torchrl-ext events \S+ --build --column r "
                                          r"next/reward$"):
        EventIndex.open(root, build_missing="error")


def test_error_mode_passes_through_the_sampler(root):
    with pytest.raises(FileNotFoundError, match="is missing; build it with"):
        EventSliceSampler(root, QUERY, build_missing="error")


def test_corrupt_index_is_a_format_error_even_in_memory_mode(root):
    EventIndex.build(root)
    (root / INDEX_DIR / "meta.json").write_text("{")
    with pytest.raises(FormatError, match="not UTF-8 JSON"):
        EventIndex.open(root)


def test_unknown_build_missing_is_refused(root):
    with pytest.raises(ValueError, match=r"`build_missing` must be one of \('memory', 'error'\), got 'save'"):
        EventIndex.open(root, build_missing="save")


def test_open_after_build_reads_the_saved_derivations(root):
    make_stale(root)
    EventIndex.build(root, columns={"r": ("next", "reward")})
    assert EventIndex.open(root, build_missing="error").counts()["craft"] == 1


SCRIPT = textwrap.dedent("""
    import os, sys, time, warnings
    from torchrl_ext.events import WindowQuery
    from torchrl_ext.samplers import EventSliceSampler
    root, go = sys.argv[1], sys.argv[2]
    while not os.path.exists(go):
        time.sleep(0.005)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sampler = EventSliceSampler(root, WindowQuery(event_regex="tick:.*", win_len=4), rank=int(sys.argv[3]),
                                    world_size=2)
    print(len(sampler), sum("nothing is written" in str(w.message) for w in caught))
""")


@pytest.mark.slow  # two subprocesses, each importing torch
def test_two_processes_opening_a_missing_index_both_succeed_and_write_nothing(root, tmp_path):
    go = tmp_path / "go"  # outside the dataset
    before = tree_snapshot(root)
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, str(root), str(go), str(rank)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for rank in range(2)]
    go.touch()
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    windows = [tuple(map(int, out.split())) for out, _ in outs]
    assert windows == [(6, 1), (6, 1)]  # 12 tick windows in two shares, one warning each
    assert tree_snapshot(root) == before
