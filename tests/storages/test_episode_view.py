"""EpisodeView: filters give hand-computed sets; every way of sampling stays inside them; metadata added later."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader
from torchrl.data import RandomSampler, SliceSampler, TensorDictReplayBuffer

from torchrl_ext import (
    EventIndex,
    EventSliceSampler,
    EventWindowDataset,
    ShardedStorage,
    ShardWriter,
    WindowQuery,
)
from torchrl_ext.storages import EpisodeView, RowDataset, collate_rows, where_clause
from torchrl_ext.synthetic import make_episode
from torchrl_ext.preprocessing import add_episode_metadata
from torchrl_ext.writer import lock_dataset, unlock_dataset

GAMES = ["pong", "qbert", "pong", "breakout", "qbert", "pong", "qbert", "pong", "breakout", "pong", "qbert", "pong"]
LENGTHS = [5, 9, 7, 4, 12, 6, 8, 5, 10, 7, 3, 9]


def _meta(e):
    return {"game": GAMES[e], "Score": 10 * e, "Active playtime": 1.5 * e, "env:source": "mturk" if e % 3 else "email"}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("view") / "ds"
    with ShardWriter.create(root, shard_rows=16) as w:
        for e, n in enumerate(LENGTHS):
            w.add_episode(make_episode(e, n, (2,)), metadata=_meta(e),
                          events=[(t, "tick", 1.0) for t in range(0, n, 3)])
    EventIndex.build(root)
    return root


def _naive(pred):
    return [e for e in range(len(GAMES)) if pred(_meta(e))]


@pytest.mark.parametrize(("where", "kw", "pred"), [
    ("game = 'pong'", {}, lambda m: m["game"] == "pong"),
    (None, {"game": "pong"}, lambda m: m["game"] == "pong"),
    ("score >= 50 AND game != 'pong'", {}, lambda m: m["Score"] >= 50 and m["game"] != "pong"),
    (None, {"Score__ge": 50, "game__ne": "pong"}, lambda m: m["Score"] >= 50 and m["game"] != "pong"),
    ('"Active playtime" < 6', {}, lambda m: m["Active playtime"] < 6),
    (None, {"filters": {"Active playtime__lt": 6, "env:source": "email"}},
     lambda m: m["Active playtime"] < 6 and m["env:source"] == "email"),
    (None, {"game__in": ["qbert", "breakout"]}, lambda m: m["game"] in ("qbert", "breakout")),
    (None, {"game": ("qbert",), "Score__le": 60}, lambda m: m["game"] == "qbert" and m["Score"] <= 60),
    (None, {"game__like": "b%"}, lambda m: m["game"].startswith("b")),
    ("game = ?", {"params": ("breakout",)}, lambda m: m["game"] == "breakout"),
    (None, {"Score__between": (30, 70), "game__ne": "qbert"}, lambda m: 30 <= m["Score"] <= 70 and m["game"] != "qbert"),
], ids=range(11))
def test_filters_select_the_hand_computed_episodes(root, where, kw, pred):
    view = EpisodeView(root, where, **kw)
    expected = _naive(pred)
    assert view.episode_ids.tolist() == expected
    assert len(view) == sum(LENGTHS[e] for e in expected)
    assert view.episodes.tolist() == [e for e in expected for _ in range(LENGTHS[e])]
    assert view.get(slice(None))["episode"].tolist() == view.episodes.tolist()


def test_views_narrow_and_report_metadata(root):
    view = EpisodeView(root, game="pong").filter(Score__gt=40)
    assert view.episode_ids.tolist() == [5, 7, 9, 11]
    assert view.metadata(["Score", "game"]) == {"Score": [50, 70, 90, 110], "game": ["pong"] * 4}
    assert view.where == '("game" = ?) AND ("Score" > ?)' and view.params == ("pong", 40)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=12, max_size=12), st.data())
def test_rows_map_like_a_naive_concatenation(root, keep, data):
    view = EpisodeView(root, episodes=np.flatnonzero(keep))
    base = ShardedStorage(root)
    first, length = base.episode_bounds
    naive = [r for e in np.flatnonzero(keep) for r in range(first[e], first[e] + length[e])]
    assert len(view) == len(naive)
    if naive:
        idx = data.draw(st.lists(st.integers(-len(naive), len(naive) - 1), min_size=1, max_size=20))
        assert view.base_rows(idx).tolist() == [naive[i] for i in idx]
        assert view.get(torch.tensor(idx))["step"].tolist() == base.get(np.asarray(naive)[idx])["step"].tolist()


def test_view_rows_out_of_range(root):
    view = EpisodeView(root, game="breakout")
    with pytest.raises(IndexError, match="out of range for a storage of 14 rows"):
        view.get(14)


def test_random_sampler_stays_inside(root):
    view = EpisodeView(root, game="qbert")
    rb = TensorDictReplayBuffer(storage=view, sampler=RandomSampler(), batch_size=256)
    batch = rb.sample()
    assert set(batch["episode"].tolist()) == {1, 4, 6, 10}


def test_slice_sampler_stays_inside_and_within_episodes(root):
    view = EpisodeView(root, game="pong", Score__ge=20)
    rb = TensorDictReplayBuffer(storage=view, sampler=SliceSampler(slice_len=3, trajectories=view.episodes, cache_values=True),
                                batch_size=60)
    batch = rb.sample().reshape(20, 3)
    assert set(batch["episode"].reshape(-1).tolist()) <= {2, 5, 7, 9, 11}
    assert (batch["episode"] == batch["episode"][:, :1]).all()
    assert (batch["step"][:, 1:] - batch["step"][:, :-1] == 1).all()


def test_event_slice_sampler_stays_inside(root):
    view = EpisodeView(root, game="breakout")
    sampler = EventSliceSampler(view, WindowQuery(event_regex="tick", win_len=2, bias=1, min_step=1), seed=0)
    rb = TensorDictReplayBuffer(storage=view, sampler=sampler, batch_size=40)
    batch = rb.sample().reshape(20, 2)
    assert set(batch["episode"].reshape(-1).tolist()) <= {3, 8}
    assert (batch["event", "episode"] == batch["episode"]).all()
    assert (batch["step"][:, -1] == batch["event", "step"][:, -1]).all()
    assert len(sampler) == 1 + 3  # ticks at step 3 of episode 3 and 3, 6, 9 of episode 8


def test_event_window_dataset_stays_inside(root):
    ds = EventWindowDataset(EpisodeView(root, game="qbert"),
                            WindowQuery(event_regex="tick", win_len=2, bias=1, min_step=1))
    assert sorted({ds[i]["episode"] for i in range(len(ds))}) == [1, 4, 6]  # episode 10 has no tick past step 0
    assert all(ds[i]["step"][-1].item() == ds[i]["event_step"] for i in range(len(ds)))


def test_row_dataset_over_a_view(root):
    loader = DataLoader(RowDataset(EpisodeView(root, game="breakout")), batch_size=7, collate_fn=collate_rows)
    assert [b["episode"].tolist() for b in loader] == [[3] * 4 + [8] * 3, [8] * 7]


def test_unknown_filter_names_list_the_columns(root):
    with pytest.raises(ValueError, match=r"filter `gmae` names no episode column; columns are \[.*'game'"):
        EpisodeView(root, gmae="pong")


@pytest.mark.parametrize(("filters", "match"), [
    ({"Score__between": 1}, r"^filter `Score__between` takes a pair \(low, high\), both included, got 1; "),
    ({"Score__range": (1, 2)}, (r"^filter `Score__range`: `__range` is not a filter operator; expected one of .*"
                               r"did you mean `Score__between`\?$")),
])
def test_a_filter_on_an_existing_column_names_its_actual_problem(root, filters, match):
    with pytest.raises(ValueError, match=match):
        EpisodeView(root, filters=filters)


def test_bad_sql_is_a_value_error(root):
    with pytest.raises(ValueError, match="is not valid SQL"):
        EpisodeView(root, "game = = 1")


@pytest.mark.parametrize(("filters", "match", "exc"), [
    ({"game__in": "pong"}, "takes a list, tuple or set", ValueError),
    ({"game": None}, "use `game__null`", TypeError),
    ({"game__null": "yes"}, r"takes True \(missing\) or False", ValueError),
])
def test_bad_filter_values(filters, match, exc):
    with pytest.raises(exc, match=match):
        where_clause(filters, ["game"])


def test_where_clause_binds_values_and_quotes_names():
    assert where_clause({"env:game": "pong", "Active playtime__gt": 3, "x__null": True, "y__in": []},
                        ["env:game", "Active playtime", "x", "y"]) == (
        '"env:game" = ? AND "Active playtime" > ? AND "x" IS NULL AND 0', ("pong", 3))


@pytest.fixture
def copy_root(root, tmp_path):
    import shutil

    return shutil.copytree(root, tmp_path / "ds")


def test_metadata_added_later_filters_and_keeps_shards(copy_root):
    before = {p: p.stat().st_mtime_ns for p in (copy_root / "shards").rglob("*") if p.is_file()}
    old = ShardedStorage(copy_root)
    old_table = old.episode_table()
    values = add_episode_metadata(copy_root, "steps seen", lambda ep: int(ep["step"].max()) + 1,
                                  columns=["step"], progress=False)
    assert values == dict(enumerate(LENGTHS))
    assert old_table.metadata(0).get("steps seen", "absent") == "absent"  # an open table keeps the old copy
    old_table.close()
    assert EpisodeView(copy_root, '"steps seen" > 8').episode_ids.tolist() == [1, 4, 8, 11]
    assert {p: p.stat().st_mtime_ns for p in (copy_root / "shards").rglob("*") if p.is_file()} == before


def test_metadata_for_some_episodes_and_overwrite(copy_root):
    add_episode_metadata(copy_root, "long", lambda ep: "yes", where="length > 8", progress=False)
    assert EpisodeView(copy_root, long__null=True).episode_ids.tolist() == [0, 2, 3, 5, 6, 7, 9, 10]
    with pytest.raises(ValueError, match="exists already; pass overwrite=True"):
        add_episode_metadata(copy_root, "long", lambda ep: "no", progress=False)
    add_episode_metadata(copy_root, "long", lambda ep: "no", overwrite=True, columns=["step"], progress=False)
    assert EpisodeView(copy_root, long="no").num_episodes == 12


def test_metadata_waits_for_no_writer(copy_root):
    fd = lock_dataset(copy_root, "test holds it")
    try:
        with pytest.raises(RuntimeError, match="a ShardWriter holds this dataset"):
            add_episode_metadata(copy_root, "x", lambda ep: 1, progress=False)
    finally:
        unlock_dataset(copy_root, fd)


def test_metadata_values_must_be_storable(copy_root):
    with pytest.raises(TypeError, match="must be int, float or str values, got list"):
        add_episode_metadata(copy_root, "bad", lambda ep: [1], columns=["step"], progress=False)
    assert "bad" not in ShardedStorage(copy_root).episode_table().metadata_columns()


def test_metadata_name_clash_by_case(copy_root):
    with pytest.raises(ValueError, match="would clash with column `Score`"):
        add_episode_metadata(copy_root, "score", lambda ep: 1, columns=["step"], progress=False)
