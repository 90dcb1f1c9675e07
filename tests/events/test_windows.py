"""Window rules: hand-computed cases and a property test against the naive reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torchrl_ext.testing.naive_events import naive_minestudio_split, naive_rows_and_mask, naive_windows
from torchrl_ext.events import EventIndex, WindowQuery, episode_in_train, select_windows


def make_index(events, lengths):
    """EventIndex from ``(name, episode, step)`` triples over episodes of ``lengths``."""
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    names = sorted({n for n, _, _ in events})
    nid = [names.index(n) for n, _, _ in events]
    ep = [e for _, e, _ in events]
    step = [s for _, _, s in events]
    row = [first[e] + s for _, e, s in events]
    return EventIndex.from_arrays(names, nid, ep, step, row), first, np.asarray(lengths, np.int64)


def select(events, lengths, **kw):
    index, first, length = make_index(events, lengths)
    return select_windows(index, first, length, WindowQuery(**kw)), first, length


def as_tuples(w):
    return [(str(w.names[n]), int(e), int(s), int(b)) for n, e, s, b in
            zip(w.name_id, w.episode, w.event_step, w.start)]


@pytest.mark.parametrize("bias, start", [(0, 46), (4, 50), (-3, 43)])
def test_bias_places_window(bias, start):
    w, _, _ = select([("a", 0, 50)], [100], win_len=4, bias=bias)
    assert as_tuples(w) == [("a", 0, 50, start)]


def test_bias_zero_excludes_event_step():
    w, first, _ = select([("a", 0, 50)], [100], win_len=4)
    rows, mask = w.rows_and_mask()
    assert rows.tolist() == [[46, 47, 48, 49]] and mask.all()


@pytest.mark.parametrize("steps, min_nearby, kept", [
    ([130, 140, 160], 20, [130, 160]),
    ([130, 150], 20, [130]),          # distance == min_nearby is dropped (MineStudio's <=)
    ([130, 151], 20, [130, 151]),
    ([10, 15, 20, 25, 30], 6, [10, 20, 30]),
    ([10, 10, 11], 0, [10, 11]),
])
def test_min_nearby_chain(steps, min_nearby, kept):
    w, _, _ = select([("a", 0, s) for s in steps], [500], win_len=1, min_nearby=min_nearby)
    assert w.event_step.tolist() == kept


def test_min_nearby_is_per_episode_and_name():
    events = [("a", 0, 100), ("b", 0, 105), ("a", 1, 105), ("a", 0, 110)]
    w, _, _ = select(events, [500, 500], win_len=1, min_nearby=20)
    assert as_tuples(w) == [("a", 0, 100, 99), ("a", 1, 105, 104), ("b", 0, 105, 104)]


def test_max_within_first_in_dataset_order():
    events = [("a", 1, 5), ("a", 0, 9), ("a", 0, 3), ("b", 0, 4)]
    w, _, _ = select(events, [20, 20], win_len=1, max_within=2)
    assert as_tuples(w) == [("a", 0, 3, 2), ("a", 0, 9, 8), ("b", 0, 4, 3)]


def test_max_within_random_is_seeded_subset():
    events = [("a", 0, s) for s in range(1, 40)]
    w1, _, _ = select(events, [50], win_len=1, max_within=5, max_within_mode="random", seed=3)
    w2, _, _ = select(events, [50], win_len=1, max_within=5, max_within_mode="random", seed=3)
    assert w1.event_step.tolist() == w2.event_step.tolist()
    assert len(w1) == 5 and w1.event_step.tolist() == sorted(w1.event_step.tolist())


def test_edge_shift_moves_window_to_episode_start():
    w, _, _ = select([("a", 1, 2)], [10, 10], win_len=4)
    rows, mask = w.rows_and_mask()
    assert w.start.tolist() == [0] and rows.tolist() == [[10, 11, 12, 13]] and mask.all()


def test_edge_shift_masks_past_episode_end():
    w, _, _ = select([("a", 0, 8)], [10, 10], win_len=4, bias=3)
    rows, mask = w.rows_and_mask()
    assert rows.tolist() == [[7, 8, 9, 9]] and mask.tolist() == [[True, True, True, False]]


def test_edge_pad_masks_before_episode_start():
    w, _, _ = select([("a", 1, 2)], [10, 10], win_len=4, edge="pad")
    rows, mask = w.rows_and_mask()
    assert w.start.tolist() == [-2]
    assert rows.tolist() == [[10, 10, 10, 11]] and mask.tolist() == [[False, False, True, True]]


@pytest.mark.parametrize("edge", ["shift", "pad"])
def test_window_starting_past_episode_end_is_dropped(edge):
    w, _, _ = select([("a", 0, 8), ("a", 0, 2)], [10], win_len=2, bias=5, edge=edge)
    assert w.event_step.tolist() == [2]


def test_skip_frame_spans_win_len_times_skip():
    w, _, _ = select([("a", 0, 20)], [40], win_len=3, skip_frame=2)
    rows, mask = w.rows_and_mask()
    assert rows.tolist() == [[14, 16, 18]] and mask.all()


def test_min_step_drops_early_events():
    w, _, _ = select([("a", 0, 127), ("a", 0, 128)], [300], win_len=1, min_step=128)
    assert w.event_step.tolist() == [128]


def test_split_by_episode_is_disjoint_and_complete():
    events = [("a", e, 5) for e in range(40)]
    train, _, _ = select(events, [10] * 40, win_len=1, split="train", split_ratio=0.7, seed=1)
    val, _, _ = select(events, [10] * 40, win_len=1, split="val", split_ratio=0.7, seed=1)
    assert set(train.episode.tolist()).isdisjoint(val.episode.tolist())
    assert sorted(train.episode.tolist() + val.episode.tolist()) == list(range(40))
    expected = [e for e in range(40) if episode_in_train(np.asarray([e]), 0.7, 1)[0]]
    assert train.episode.tolist() == expected


def test_split_minestudio_first_fraction_per_name():
    events = [("a", 0, s) for s in range(1, 11)] + [("b", 0, s) for s in range(1, 4)]
    train, _, _ = select(events, [20], win_len=1, split="train", split_ratio=0.5, split_mode="minestudio")
    val, _, _ = select(events, [20], win_len=1, split="val", split_ratio=0.5, split_mode="minestudio")
    assert as_tuples(train) == [("a", 0, s, s - 1) for s in range(1, 6)] + [("b", 0, 1, 0)]
    assert as_tuples(val) == [("a", 0, s, s - 1) for s in range(6, 11)] + [("b", 0, 2, 1), ("b", 0, 3, 2)]


def test_regex_is_anchored_at_start_only():
    events = [("minecraft.mine_block:oak", 0, 1), ("x.minecraft.mine_block", 0, 2), ("minecraft.craft", 0, 3)]
    w, _, _ = select(events, [10], win_len=1, event_regex="minecraft.mine")
    assert as_tuples(w) == [("minecraft.mine_block:oak", 0, 1, 0)]


def test_regex_matching_nothing_warns_with_the_names_that_exist():
    index, first, length = make_index([("a", 0, 1), ("b", 0, 2), ("b", 0, 3)], [10])
    with pytest.warns(UserWarning, match=r"`event_regex` 'c' matches none of the 2 event names \(re.match, anchored "
                                         r"at the start\); events per name: b \(2\), a \(1\)$"):
        w = select_windows(index, first, length, WindowQuery(event_regex="c"))
    assert len(w) == 0


def test_unmatched_warning_lists_the_ten_most_frequent_names():
    events = [(f"n{k:02d}", 0, s) for k in range(12) for s in range(k + 1)]
    index, first, length = make_index(events, [20])
    with pytest.warns(UserWarning, match=r"events per name: n11 \(12\), n10 \(11\), .*, n02 \(3\) and 2 more$"):
        select_windows(index, first, length, WindowQuery(event_regex="zzz"))


def test_episode_filter_restricts_windows():
    index, first, length = make_index([("a", 0, 3), ("a", 1, 3), ("a", 2, 3)], [10, 10, 10])
    w = select_windows(index, first, length, WindowQuery(win_len=1), episodes=np.asarray([0, 2]))
    assert w.episode.tolist() == [0, 2]


def test_minestudio_preset_matches_reference():
    events = [(f"minecraft.kill_entity:{k}", e, s) for k in ("cow", "sheep") for e in range(3)
              for s in (100, 130, 140, 160, 300, 305)]
    lengths = [400, 200, 320]
    ref = naive_windows(events, lengths, regex="minecraft.kill", win_len=64, bias=8, skip_frame=2,
                        min_nearby=20, max_within=7, min_step=128, minestudio_start=True)
    ref = naive_minestudio_split(ref, "val", 0.6)
    w, _, _ = select(events, lengths, **vars(WindowQuery.minestudio(
        event_regex="minecraft.kill", win_len=64, bias=8, skip_frame=2, min_nearby=20, max_within=7,
        split="val", split_ratio=0.6)))
    assert as_tuples(w) == ref


NAMES = ["a:1", "a:2", "b"]
event_st = st.tuples(st.sampled_from(NAMES), st.integers(0, 3), st.integers(0, 60))


@pytest.mark.filterwarnings("ignore:`event_regex`")
@settings(max_examples=150, deadline=None)
@given(events=st.lists(event_st, max_size=40), lengths=st.lists(st.integers(1, 60), min_size=4, max_size=4),
       regex=st.sampled_from([".*", "a", "a:2", "b|a:1"]), win_len=st.integers(1, 8),
       bias=st.integers(-10, 10), skip=st.integers(1, 3), min_nearby=st.none() | st.integers(0, 15),
       max_within=st.none() | st.integers(0, 6), edge=st.sampled_from(["shift", "pad"]),
       min_step=st.integers(0, 5), split=st.sampled_from([None, "train", "val"]),
       ratio=st.sampled_from([0.0, 0.3, 0.5, 1.0]))
def test_matches_naive_reference(events, lengths, regex, win_len, bias, skip, min_nearby, max_within, edge,
                                 min_step, split, ratio):
    events = [(n, e, min(s, lengths[e] - 1)) for n, e, s in events]
    kw = dict(win_len=win_len, bias=bias, skip_frame=skip, min_nearby=min_nearby, max_within=max_within,
              edge=edge, min_step=min_step)
    ref = naive_windows(events, lengths, regex=regex, **kw)
    if split is not None:
        ref = naive_minestudio_split(ref, split, ratio)
    if not events:
        return
    w, first, length = select(events, lengths, event_regex=regex, split=split, split_ratio=ratio,
                              split_mode="minestudio", **kw)
    assert as_tuples(w) == ref
    rows, mask = w.rows_and_mask()
    for i, win in enumerate(ref):
        r, m = naive_rows_and_mask(win, first, length, win_len, skip)
        assert rows[i].tolist() == r and mask[i].tolist() == m
