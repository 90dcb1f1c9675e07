"""EventSliceSampler inside TorchRL replay buffers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchrl.data import ReplayBufferEnsemble, TensorDictReplayBuffer

from torchrl_ext.events import EventIndex, WindowQuery
from torchrl_ext.samplers import EventSliceSampler
from torchrl_ext.storages import ShardedStorage
from torchrl_ext.synthetic import obs_value, write_synthetic

WIN = 4
QUERY = WindowQuery(event_regex="tick:.*", win_len=WIN)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    # episodes of 30 steps; tick:<step % 3> at steps 0, 7, 14, 21, 28; episode_end at 29
    root = write_synthetic(tmp_path_factory.mktemp("ev") / "ds", episodes=6, length=30, obs_shape=(3,),
                           shard_rows=50, events_every=7)
    EventIndex.build(root)
    return root


@pytest.fixture(scope="module")
def storage(root):
    return ShardedStorage(root)


def make_rb(storage, batch_windows=2, *, event_regex="tick:.*", bias=0, **kw):
    sampler = EventSliceSampler(storage, WindowQuery(event_regex=event_regex, win_len=WIN, bias=bias), **kw)
    return TensorDictReplayBuffer(storage=storage, sampler=sampler, batch_size=batch_windows * WIN), sampler


def epoch_keys(rb, sampler):
    keys = []
    while True:
        b = rb.sample().reshape(-1, sampler.query.win_len)
        keys += list(zip(b["event", "episode"][:, 0].tolist(), b["event", "step"][:, 0].tolist()))
        if sampler.ran_out:
            return keys


def test_sample_rows_match_windows(storage):
    rb, sampler = make_rb(storage, batch_windows=3, bias=2, seed=0)
    b = rb.sample().reshape(3, WIN)
    ev_step = b["event", "step"][:, :1]
    shifted = (ev_step + 2 - WIN).clamp(min=0) + torch.arange(WIN)  # edge="shift"
    assert torch.equal(b["step"], shifted.clamp(max=29))
    assert torch.equal(b["episode"], b["event", "episode"])
    assert torch.equal(b["mask"], shifted < 30)
    obs = torch.from_numpy(obs_value(b["episode"].numpy(), b["step"].numpy()))
    assert torch.equal(b["observation"][..., 0], obs)


def test_truncated_marks_window_ends(storage):
    rb, _ = make_rb(storage, seed=1)
    b = rb.sample().reshape(2, WIN)
    assert b["next", "truncated"][..., 0].tolist() == [[False, False, False, True]] * 2


def test_event_name_ids_name_each_window_event(storage):
    # the synthetic dataset logs tick:<step % 3>, so the name follows from the event step
    rb, sampler = make_rb(storage, batch_windows=20, seed=2)
    b = rb.sample()
    names = [str(sampler.names[i]) for i in b["event", "name_id"].tolist()]
    assert names == [f"tick:{s % 3}" for s in b["event", "step"].tolist()]


def test_without_replacement_visits_every_window_once(storage):
    rb, sampler = make_rb(storage, batch_windows=7, replacement=False, seed=3)
    keys = epoch_keys(rb, sampler)
    assert sorted(keys) == sorted((e, s) for e in range(6) for s in (0, 7, 14, 21, 28))


def test_iterating_the_buffer_visits_each_window_once_per_epoch(storage):
    rb, sampler = make_rb(storage, batch_windows=6, replacement=False, seed=3, drop_last=True)
    for _ in range(2):  # ReplayBuffer.__iter__ clears ran_out before each epoch
        keys = []
        for b in rb:
            b = b.reshape(-1, WIN)
            keys += list(zip(b["event", "episode"][:, 0].tolist(), b["event", "step"][:, 0].tolist()))
        assert sorted(keys) == sorted((e, s) for e in range(6) for s in (0, 7, 14, 21, 28))


def test_without_replacement_next_epoch_reshuffles(storage):
    rb, sampler = make_rb(storage, batch_windows=30, replacement=False, seed=3)
    first, second = epoch_keys(rb, sampler), epoch_keys(rb, sampler)
    assert sorted(first) == sorted(second) and first != second


@pytest.mark.parametrize("replacement", [True, False])
def test_state_dict_resumes_mid_epoch(storage, replacement):
    rb, sampler = make_rb(storage, batch_windows=4, replacement=replacement, seed=5)
    rb.sample()
    state = sampler.state_dict()
    expected = [rb.sample()["index"].tolist() for _ in range(5)]
    rb2, sampler2 = make_rb(storage, batch_windows=4, replacement=replacement, seed=99)
    sampler2.load_state_dict(state)
    assert [rb2.sample()["index"].tolist() for _ in range(5)] == expected


def test_dumps_loads_round_trip(storage, tmp_path):
    rb, sampler = make_rb(storage, replacement=False, seed=6)
    rb.sample()
    sampler.dumps(tmp_path / "s")
    _, other = make_rb(storage, replacement=False, seed=0)
    other.loads(tmp_path / "s")
    assert other.state_dict() == sampler.state_dict()


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_partition_windows(storage, world_size):
    shares = [EventSliceSampler(storage, QUERY, rank=r, world_size=world_size).windows for r in range(world_size)]
    keys = [set(zip(w.episode.tolist(), w.event_step.tolist())) for w in shares]
    assert sum(len(k) for k in keys) == 30 and len(set().union(*keys)) == 30


def test_balance_by_names_is_uniform_over_names(storage):
    # episode_end has 6 windows, tick:* 24; names balance gives ~ half episode_end
    rb, sampler = make_rb(storage, batch_windows=500, event_regex="episode_end|tick:0", balance="names", seed=7)
    names = np.asarray(sampler.names)[rb.sample().reshape(500, WIN)["event", "name_id"][:, 0].numpy()]
    share = float((names == "episode_end").mean())
    assert 0.4 < share < 0.6


def test_where_filter_restricts_episodes(storage):
    rb, _ = make_rb(storage, batch_windows=50, where="game = 'pong'", seed=8)
    assert set(rb.sample()["episode"].tolist()) <= {0, 2, 4}


def test_index_argument_selects_windows_at_first_sample(root, storage):
    sampler = EventSliceSampler(EventIndex.open(root), WindowQuery(event_regex="episode_end", win_len=WIN, bias=1))
    rb = TensorDictReplayBuffer(storage=storage, sampler=sampler, batch_size=WIN)
    b = rb.sample()
    assert b["step"].tolist() == [26, 27, 28, 29] and len(sampler) == 6


def test_works_in_replay_buffer_ensemble(storage):
    rb_ticks, _ = make_rb(storage, seed=9)
    rb_ends, _ = make_rb(storage, event_regex="episode_end", bias=1, seed=9)
    ens = ReplayBufferEnsemble(rb_ticks, rb_ends, batch_size=16, sample_from_all=True)
    b = ens.sample()
    assert b.batch_size == torch.Size([2, 8])
    assert b[1]["step"].reshape(2, WIN)[:, -1].tolist() == [29, 29]


def test_batch_size_must_be_multiple_of_win_len(storage):
    rb, sampler = make_rb(storage)
    with pytest.raises(ValueError, match=r"`batch_size` must be a multiple of win_len=4"):
        sampler.sample(rb.storage, 6)


def test_regex_matching_nothing_warns_at_construction(storage):
    with pytest.warns(UserWarning, match=r"`event_regex` 'nothing' matches none of the 4 event names.* \(6\)"):
        make_rb(storage, event_regex="nothing")


@pytest.mark.filterwarnings("ignore:`event_regex`")
def test_no_matching_event_is_reported(storage):
    rb, _ = make_rb(storage, event_regex="nothing")
    with pytest.raises(RuntimeError, match="no window matches event_regex='nothing'"):
        rb.sample()


@pytest.mark.filterwarnings("ignore:`event_regex`")
def test_no_window_means_cannot_sample(storage):
    rb, _ = make_rb(storage, event_regex="nothing")
    assert not rb.can_sample()


def test_names_balance_needs_replacement(storage):
    with pytest.raises(ValueError, match="`balance='names'` needs `replacement=True`"):
        EventSliceSampler(storage, QUERY, balance="names", replacement=False)


def test_replacement_false_reaches_the_sampler(storage):
    sampler = EventSliceSampler(storage, QUERY, replacement=False)
    assert type(sampler) is EventSliceSampler and sampler.replacement is False


def test_reset_restarts_the_sampling_order(storage):
    rb, sampler = make_rb(storage, batch_windows=4, replacement=False, seed=4)
    first = rb.sample()["index"].tolist()
    rb.sample()
    sampler.reset()
    assert sampler.state_dict()["cursor"] == 0 and rb.sample()["index"].tolist() == first


def test_keyword_form_builds_the_same_query_and_samples(storage):
    by_query = EventSliceSampler(storage, WindowQuery(event_regex="tick:.*", win_len=WIN, bias=2, seed=3), seed=3)
    by_keywords = EventSliceSampler(storage, event_regex="tick:.*", win_len=WIN, bias=2, seed=3)
    assert by_keywords.query == by_query.query
    assert by_keywords.sample(storage, 8)[0].tolist() == by_query.sample(storage, 8)[0].tolist()


def test_root_and_storage_select_the_same_windows(root, storage):
    by_root, by_storage = EventSliceSampler(root, QUERY), EventSliceSampler(storage, QUERY)
    assert by_root.windows.start.tolist() == by_storage.windows.start.tolist()


def test_both_query_forms_at_once_are_refused(storage):
    with pytest.raises(TypeError, match=r"EventSliceSampler: pass the window rules either as `query=` or as keyword "
                                        r"options, not both; got `query` and \['bias'\]"):
        EventSliceSampler(storage, QUERY, bias=1)


def test_keyword_form_needs_win_len(storage):
    with pytest.raises(TypeError, match=r"EventSliceSampler needs `query=WindowQuery\(\.\.\.\)` or window options"):
        EventSliceSampler(storage, event_regex="tick")


def test_unknown_keyword_is_refused(storage):
    with pytest.raises(TypeError, match=r"unknown window option\(s\) \['win_length'\]"):
        EventSliceSampler(storage, win_length=4)


@pytest.mark.parametrize("kw, error, match", [
    ({"rank": 2, "world_size": 2}, ValueError, r"`rank` must be an int in \[0, 1\], got 2"),
    ({"world_size": 0}, ValueError, r"`world_size` must be a positive int, got 0"),
    ({"seed": -3}, ValueError, r"`seed` must be an int >= 0 or None, got -3"),
    ({"balance": "episodes"}, ValueError, r"`balance` must be one of \('windows', 'names'\), got 'episodes'"),
    ({"where": 3}, TypeError, r"`where` must be an SQL WHERE clause \(str\) or None, got 3"),
])
def test_sampler_arguments_are_validated(storage, kw, error, match):
    with pytest.raises(error, match=match):
        EventSliceSampler(storage, QUERY, **kw)


def test_first_argument_type_is_checked():
    with pytest.raises(TypeError, match="`root_or_storage` must be a dataset path, a ShardedStorage or an EventIndex, "
                                        "got int"):
        EventSliceSampler(3, QUERY)
