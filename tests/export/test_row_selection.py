"""select_rows: an episode filter and event windows as the exact rows and shards a read touches."""

from __future__ import annotations

import numpy as np
import pytest

from torchrl_ext import (
    EventIndex,
    EventWindowDataset,
    ShardedStorage,
    ShardWriter,
    WindowQuery,
)
from torchrl_ext.export import needed_bytes, select_rows
from torchrl_ext.storages import EpisodeView
from torchrl_ext.synthetic import make_episode

# 6 episodes of 10 rows in shards of 15 rows: shard boundaries at rows 15, 30, 45
EVENTS = {1: [(5, "edge", 1.0)], 2: [(3, "kill_entity:skeleton", 2.0), (9, "last", 2.0)],
          4: [(6, "kill_entity:zombie", 4.0)]}


def _write(root, encodings=None):
    with ShardWriter.create(root, shard_rows=15, encodings=encodings) as w:
        for e in range(6):
            w.add_episode(make_episode(e, 10, (4,), final=e % 2 == 0), metadata={"Score": 10 * e},
                          events=[(1, "jump", float(e)), *EVENTS.get(e, [])])
    EventIndex.build(root)
    return root


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    return ShardedStorage(_write(tmp_path_factory.mktemp("rows") / "ds"))


def test_whole_episodes_of_a_filter(storage):
    sel = select_rows(storage, "Score >= 40")
    assert sel.episodes.tolist() == [4, 5]
    assert sel.rows.tolist() == list(range(40, 60)) and sel.reads.tolist() == list(range(40, 60))
    assert sel.shards.tolist() == [2, 3]


def test_no_filter_selects_every_row(storage):
    sel = select_rows(storage)
    assert sel.episodes.tolist() == list(range(6)) and sel.rows.tolist() == list(range(60))
    assert sel.shards.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(("regex", "win_len", "bias", "where"), [
    ("kill_entity:.*", 4, 0, None),
    ("kill_entity:.*", 3, 2, "Score < 30"),
    ("jump", 2, 1, "Score >= 20"),
    ("edge|last", 6, -1, None),
])
def test_windows_are_the_rows_event_window_dataset_reads(storage, regex, win_len, bias, where):
    sel = select_rows(storage, where, regex, win_len, bias)
    windows = EventWindowDataset(storage, WindowQuery(event_regex=regex, win_len=win_len, bias=bias),
                                 where=where).windows
    assert sel.rows.tolist() == np.unique(windows.rows_and_mask()[0]).tolist()
    assert sel.episodes.tolist() == np.unique(windows.episode).tolist()


def test_kill_windows_rows_and_shards(storage):
    sel = select_rows(storage, event_regex="kill_entity:.*", win_len=4)
    # episode 2 (rows 20..29), event at step 3: window shifted to steps 0..3; episode 4 (rows 40..49), step 6: 2..5
    assert sel.episodes.tolist() == [2, 4]
    assert sel.rows.tolist() == [20, 21, 22, 23, 42, 43, 44, 45]
    assert sel.reads.tolist() == [20, 21, 22, 23, 24, 42, 43, 44, 45, 46]
    assert sel.shards.tolist() == [1, 2, 3]  # rows 15..29, 30..44 and 45..59


def test_a_next_row_in_the_next_shard_counts_only_inside_the_episode(storage):
    across = select_rows(storage, event_regex="edge", win_len=1)  # episode 1, step 4: row 14, shard 0's last
    assert across.rows.tolist() == [14] and across.reads.tolist() == [14, 15]
    assert across.shards.tolist() == [0, 1]
    at_end = select_rows(storage, event_regex="last", win_len=1, bias=1)  # episode 2's last row, shard 1's last
    assert at_end.rows.tolist() == [29] and at_end.reads.tolist() == [29]
    assert at_end.shards.tolist() == [1]


def test_a_view_selects_among_its_episodes(storage):
    sel = select_rows(EpisodeView(storage, Score__le=30), "Score >= 20", "jump", win_len=1, bias=1)
    assert sel.episodes.tolist() == [2, 3] and sel.rows.tolist() == [21, 31]


def test_needed_bytes_counts_raw_rows_and_the_rest_of_a_shard_pro_rata(tmp_path):
    st = ShardedStorage(_write(tmp_path / "ds", encodings={"observation": "zstd"}))
    raw = sum(c.row_bytes for c in st.manifest.schema if c.encoding == "raw")
    s0, s1 = st.manifest.shards[:2]
    assert st.manifest.column(("observation",)).encoding == "zstd" and s0.bytes > 15 * raw
    assert needed_bytes(st.manifest, st.offsets, np.arange(15)) == s0.bytes
    rows = np.array([0, 1, 2, 15, 16])
    expected = 5 * raw + (s0.bytes - 15 * raw) * 3 / 15 + (s1.bytes - 15 * raw) * 2 / 15
    assert needed_bytes(st.manifest, st.offsets, rows) == round(expected)
    assert needed_bytes(st.manifest, st.offsets, np.zeros(0, np.int64)) == 0


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"where": "Nope >= 1"}, ValueError, r"^episode filter 'Nope >= 1' is not valid SQL over columns .*no such column"),
    ({"event_regex": "(", "win_len": 4}, ValueError, r"^`event_regex` must be a valid Python regular expression"),
    ({"event_regex": "kill", "win_len": 0}, ValueError, r"^`win_len` must be a positive int, got 0$"),
    ({"event_regex": "kill"}, ValueError, r"^`win_len` is required with `event_regex` 'kill', got None"),
    ({"win_len": 4}, ValueError, r"^`win_len` \(4\) and `bias` \(0\) shape windows around events; pass `event_regex`"),
    ({"bias": 2}, ValueError, r"`bias` \(2\) shape windows"),
    ({"event_regex": "fight", "win_len": 4}, ValueError,
     r"^`event_regex` 'fight' matches none of the 5 event names .*jump \(6\).*; pick one of these names$"),
])
def test_bad_queries_are_one_line_errors(storage, kwargs, error, match):
    with pytest.raises(error, match=match) as info:
        select_rows(storage, **kwargs)
    assert "\n" not in str(info.value)


def test_a_storage_is_required(storage):
    with pytest.raises(TypeError, match=r"^`storage` must be a ShardedStorage or an EpisodeView, got str"):
        select_rows(str(storage.root))
