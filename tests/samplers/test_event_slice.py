"""EventSliceSampler inside TorchRL replay buffers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchrl.data import ReplayBufferEnsemble, TensorDictReplayBuffer

from torchrl_ext.events import EventIndex
from torchrl_ext.samplers import EventSliceSampler
from torchrl_ext.storages import ShardedStorage
from torchrl_ext.synthetic import obs_value, write_synthetic

WIN = 4


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    # episodes of 30 steps; tick:<step % 3> at steps 0, 7, 14, 21, 28; episode_end at 29
    return write_synthetic(tmp_path_factory.mktemp("ev") / "ds", episodes=6, length=30, obs_shape=(3,),
                           shard_rows=50, events_every=7)


def make_rb(root, batch_windows=2, **kw):
    kw.setdefault("event_regex", "tick:.*")
    kw.setdefault("win_len", WIN)
    sampler = EventSliceSampler(root, **kw)
    return TensorDictReplayBuffer(storage=ShardedStorage(root), sampler=sampler,
                                  batch_size=batch_windows * kw["win_len"]), sampler


def epoch_keys(rb, sampler):
    keys = []
    while True:
        b = rb.sample().reshape(-1, sampler.query.win_len)
        keys += list(zip(b["event", "episode"][:, 0].tolist(), b["event", "step"][:, 0].tolist()))
        if sampler.ran_out:
            return keys


def test_sample_rows_match_windows(root):
    rb, sampler = make_rb(root, batch_windows=3, bias=2, seed=0)
    b = rb.sample().reshape(3, WIN)
    ev_step = b["event", "step"][:, :1]
    shifted = (ev_step + 2 - WIN).clamp(min=0) + torch.arange(WIN)  # edge="shift"
    assert torch.equal(b["step"], shifted.clamp(max=29))
    assert torch.equal(b["episode"], b["event", "episode"])
    assert torch.equal(b["mask"], shifted < 30)
    obs = torch.from_numpy(obs_value(b["episode"].numpy(), b["step"].numpy()))
    assert torch.equal(b["observation"][..., 0], obs)


def test_truncated_marks_window_ends(root):
    rb, _ = make_rb(root, seed=1)
    b = rb.sample().reshape(2, WIN)
    assert b["next", "truncated"][..., 0].tolist() == [[False, False, False, True]] * 2


def test_event_names_available(root):
    rb, sampler = make_rb(root, seed=2)
    b = rb.sample()
    names = {str(sampler.names[i]) for i in b["event", "name_id"].tolist()}
    assert names <= {"tick:0", "tick:1", "tick:2"}


def test_without_replacement_visits_every_window_once(root):
    rb, sampler = make_rb(root, batch_windows=7, replacement=False, seed=3)
    keys = epoch_keys(rb, sampler)
    assert sorted(keys) == sorted((e, s) for e in range(6) for s in (0, 7, 14, 21, 28))


def test_without_replacement_next_epoch_reshuffles(root):
    rb, sampler = make_rb(root, batch_windows=30, replacement=False, seed=3)
    first, second = epoch_keys(rb, sampler), epoch_keys(rb, sampler)
    assert sorted(first) == sorted(second) and first != second


@pytest.mark.parametrize("replacement", [True, False])
def test_state_dict_resumes_mid_epoch(root, replacement):
    rb, sampler = make_rb(root, batch_windows=4, replacement=replacement, seed=5)
    rb.sample()
    state = sampler.state_dict()
    expected = [rb.sample()["index"].tolist() for _ in range(5)]
    rb2, sampler2 = make_rb(root, batch_windows=4, replacement=replacement, seed=99)
    sampler2.load_state_dict(state)
    assert [rb2.sample()["index"].tolist() for _ in range(5)] == expected


def test_dumps_loads_round_trip(root, tmp_path):
    rb, sampler = make_rb(root, replacement=False, seed=6)
    rb.sample()
    sampler.dumps(tmp_path / "s")
    _, other = make_rb(root, replacement=False, seed=0)
    other.loads(tmp_path / "s")
    assert other.state_dict() == sampler.state_dict()


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_partition_windows(root, world_size):
    shares = [EventSliceSampler(root, event_regex="tick:.*", win_len=WIN, rank=r, world_size=world_size).windows
              for r in range(world_size)]
    keys = [set(zip(w.episode.tolist(), w.event_step.tolist())) for w in shares]
    assert sum(len(k) for k in keys) == 30 and len(set().union(*keys)) == 30


def test_balance_by_names_is_uniform_over_names(root):
    # episode_end has 6 windows, tick:* 24; names balance gives ~ half episode_end
    rb, sampler = make_rb(root, batch_windows=500, event_regex="episode_end|tick:0", balance="names", seed=7)
    names = np.asarray(sampler.names)[rb.sample().reshape(500, WIN)["event", "name_id"][:, 0].numpy()]
    share = float((names == "episode_end").mean())
    assert 0.4 < share < 0.6


def test_where_filter_restricts_episodes(root):
    rb, _ = make_rb(root, batch_windows=50, where="game = 'pong'", seed=8)
    assert set(rb.sample()["episode"].tolist()) <= {0, 2, 4}


def test_index_argument_selects_windows_at_first_sample(root):
    sampler = EventSliceSampler(EventIndex.open(root), event_regex="episode_end", win_len=WIN, bias=1)
    rb = TensorDictReplayBuffer(storage=ShardedStorage(root), sampler=sampler, batch_size=WIN)
    b = rb.sample()
    assert b["step"].tolist() == [26, 27, 28, 29] and len(sampler) == 6


def test_works_in_replay_buffer_ensemble(root):
    rb_ticks, _ = make_rb(root, seed=9)
    rb_ends, _ = make_rb(root, event_regex="episode_end", bias=1, seed=9)
    ens = ReplayBufferEnsemble(rb_ticks, rb_ends, batch_size=16, sample_from_all=True)
    b = ens.sample()
    assert b.batch_size == torch.Size([2, 8])
    assert b[1]["step"].reshape(2, WIN)[:, -1].tolist() == [29, 29]


def test_batch_size_must_be_multiple_of_win_len(root):
    rb, sampler = make_rb(root)
    with pytest.raises(ValueError, match=r"`batch_size` must be a multiple of win_len=4"):
        sampler.sample(rb.storage, 6)


def test_no_matching_event_is_reported(root):
    rb, _ = make_rb(root, event_regex="nothing")
    with pytest.raises(RuntimeError, match="no window matches event_regex='nothing'"):
        rb.sample()


def test_names_balance_needs_replacement(root):
    with pytest.raises(ValueError, match="`balance='names'` needs `replacement=True`"):
        EventSliceSampler(root, win_len=WIN, balance="names", replacement=False)
