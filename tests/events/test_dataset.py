"""EventWindowDataset with DataLoader workers, DistributedSampler and several roots."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from torchrl_ext.testing.naive_events import naive_minestudio_split, naive_windows
from torchrl_ext.events import EventIndex, EventWindowDataset, WindowQuery, batchify
from torchrl_ext.synthetic import make_episode, obs_value, write_synthetic
from torchrl_ext.writer import ShardWriter


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = write_synthetic(tmp_path_factory.mktemp("ds") / "ds", episodes=6, length=30, obs_shape=(2,),
                           shard_rows=40, events_every=7)
    EventIndex.build(root)
    return root


def test_item_fields(root):
    ds = EventWindowDataset(root, WindowQuery(event_regex="tick:1", win_len=4, bias=1))
    item = ds[0]  # tick:1 first at episode 0 step 7
    assert (item["text"], item["episode"], item["event_step"]) == ("tick:1", 0, 7)
    assert item["timestamp"].tolist() == [4, 5, 6, 7] and item["mask"].all()
    assert item["observation"][:, 0].tolist() == obs_value(0, np.arange(4, 8)).tolist()
    assert item["action"].tolist() == [4 % 6, 5 % 6, 0, 1]


@pytest.mark.slow  # spawned workers, each importing torch
def test_dataloader_workers_shuffle(root):
    ds = EventWindowDataset(root, WindowQuery(event_regex="tick:.*", win_len=4))
    loader = DataLoader(ds, batch_size=4, shuffle=True, num_workers=2, collate_fn=batchify,
                        generator=torch.Generator().manual_seed(0))
    seen = []
    for batch in loader:
        assert batch["observation"].shape[1:] == (4, 2) and isinstance(batch["text"], list)
        obs = obs_value(batch["episode"][:, None].numpy(), batch["step"].numpy())
        assert np.array_equal(batch["observation"][..., 0].numpy(), obs)
        seen += list(zip(batch["episode"].tolist(), batch["event_step"].tolist()))
    assert sorted(seen) == sorted((e, s) for e in range(6) for s in (0, 7, 14, 21, 28))


def test_distributed_sampler_shares_are_disjoint(root):
    ds = EventWindowDataset(root, WindowQuery(event_regex="tick:.*", win_len=4))
    shares = [set(DistributedSampler(ds, num_replicas=3, rank=r, shuffle=True, seed=1)) for r in range(3)]
    assert sum(map(len, shares)) == 30 and len(set().union(*shares)) == 30


def test_several_roots_minestudio_compat(tmp_path):
    lengths, events = [], []
    roots = []
    for r in range(2):
        with ShardWriter.create(tmp_path / f"r{r}") as w:
            for e in range(3):
                evs = [(s, f"minecraft.kill_entity:{k}", 1.0) for k in ("cow", "pig") for s in
                       (100 + 10 * e, 130, 140 + r, 160, 190)]
                w.add_episode(make_episode(e, 200, (1,)), events=evs)
        EventIndex.build(tmp_path / f"r{r}")
        roots.append(tmp_path / f"r{r}")
        events.append([(n, e, s) for e in range(3) for s, n, _ in
                       [(s, f"minecraft.kill_entity:{k}", 1.0) for k in ("cow", "pig")
                        for s in (100 + 10 * e, 130, 140 + r, 160, 190)]])
        lengths.append([200] * 3)
    ds = EventWindowDataset(roots, event_regex="minecraft.kill", win_len=16, bias=2, min_nearby=20,
                            max_within=5, compat="minestudio", split="train", split_ratio=0.7)
    per_root = [naive_windows(events[r], lengths[r], regex="minecraft.kill", win_len=16, bias=2, min_nearby=20,
                              max_within=5, min_step=128, minestudio_start=True) for r in range(2)]
    names = sorted({w[0] for p in per_root for w in p})
    merged = [(r, w) for n in names for r in range(2) for w in per_root[r] if w[0] == n]
    expected = naive_minestudio_split([(w[0], r, w[1], w[2], w[3]) for r, w in merged], "train", 0.7)
    got = [(str(ds.windows.names[n]), int(r), int(e), int(s), int(b)) for n, r, e, s, b in zip(
        ds.windows.name_id, ds.windows.root_id, ds.windows.episode, ds.windows.event_step, ds.windows.start)]
    assert got == expected
    assert ds[0]["text"] == "kill_entity:cow"


def test_keyword_form_selects_the_same_windows(root):
    by_query = EventWindowDataset(root, WindowQuery(event_regex="tick:.*", win_len=4, bias=2, min_nearby=7))
    by_keywords = EventWindowDataset(root, event_regex="tick:.*", win_len=4, bias=2, min_nearby=7)
    assert by_keywords.query == by_query.query
    assert by_keywords.windows.start.tolist() == by_query.windows.start.tolist()


def test_where_restricts_episodes(root):
    ds = EventWindowDataset(root, WindowQuery(event_regex="tick:.*", win_len=4), where="game = 'pong'")
    assert sorted(set(ds.windows.episode.tolist())) == [0, 2, 4]


def test_both_query_forms_at_once_are_refused(root):
    with pytest.raises(TypeError, match=r"EventWindowDataset: pass the window rules either as `query=` or as "
                                        r"keyword options, not both; got `query` and \['bias'\]"):
        EventWindowDataset(root, WindowQuery(win_len=4), bias=1)


def test_no_root_is_refused():
    with pytest.raises(ValueError, match="`roots` must name at least one dataset directory"):
        EventWindowDataset([], WindowQuery(win_len=4))
