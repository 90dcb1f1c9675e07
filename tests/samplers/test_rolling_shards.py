"""RollingShardSampler: every row once per epoch, a rolling window of shards, one global sequence for every rank."""

from __future__ import annotations

import heapq
import json
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchrl.data import ReplayBuffer, TensorDictReplayBuffer

from torchrl_ext import FormatError
from torchrl_ext.samplers import EpochOrder, RollingShardSampler, shard_order
from torchrl_ext.samplers.rolling_shards import STATE_FILE
from torchrl_ext.storages import EpisodeView, ShardedStorage
from torchrl_ext.synthetic import write_synthetic

SHARD_ROWS = 7
EPISODES = 12
LENGTH = (3, 20)


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    root = write_synthetic(tmp_path_factory.mktemp("rolling") / "ds", episodes=EPISODES, length=LENGTH,
                           obs_shape=(1,), shard_rows=SHARD_ROWS)
    return ShardedStorage(root)


@pytest.fixture(scope="module")
def offsets(storage):
    return storage.reader.offsets


def naive_order(offsets, window, seed, epoch):
    """The module's rule computed directly: every row's time at once, one sort over the whole epoch."""
    sizes = np.diff(offsets)
    times, rows, retire = [], [], []
    for i, shard in enumerate(shard_order(sizes, seed, epoch)):
        enter = heapq.heappop(retire) if i >= window else 0.0
        t = enter + np.random.default_rng([seed, epoch, 1, int(shard)]).standard_exponential(sizes[shard])
        heapq.heappush(retire, t.max())
        times.append(t)
        rows.append(offsets[shard] + np.arange(sizes[shard]))
    if not rows:
        return np.empty(0, np.int64)
    return np.concatenate(rows)[np.argsort(np.concatenate(times), kind="stable")]


def epoch_rows(offsets, window, seed=0, epoch=0):
    return EpochOrder(offsets, window, seed, epoch).take(0, int(offsets[-1]))


def shard_of(offsets, rows):
    return np.searchsorted(offsets, rows, side="right") - 1


def draw(sampler, storage, batch_size, batches):
    return [sampler.sample(storage, batch_size)[0].numpy() for _ in range(batches)]


class RecordingStorage(ShardedStorage):
    """A storage that records the prefetch hints it is given."""

    def will_need(self, shard_ids: list[int]) -> None:
        self.__dict__.setdefault("calls", []).append(list(shard_ids))


# ------------------------------------------------------------ the order of an epoch
@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 9), min_size=1, max_size=12), window=st.integers(1, 4),
       seed=st.integers(0, 2**32), chunks=st.lists(st.integers(0, 15), min_size=1, max_size=8))
def test_epoch_order_matches_the_rule_computed_at_once(sizes, window, seed, chunks):
    offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    order, n, pos, got = EpochOrder(offsets, window, seed, 3), int(offsets[-1]), 0, []
    for c in chunks * (n + 1):
        if pos == n:
            break
        got.append(order.take(pos, min(c, n - pos)))
        pos += len(got[-1])
    rest = order.take(pos, n - pos)
    assert np.array_equal(np.concatenate(got + [rest]), naive_order(offsets, window, seed, 3))


def test_empty_shards_are_never_listed():
    offsets = np.array([0, 3, 3, 5, 5, 9])
    order = EpochOrder(offsets, 2, seed=1, epoch=0)
    assert sorted(order.order.tolist()) == [0, 2, 4]
    assert np.array_equal(np.sort(order.take(0, 9)), np.arange(9))


@pytest.mark.parametrize("window", [1, 2, 3, 5])
def test_at_most_window_shards_are_active_and_they_enter_in_order(offsets, window):
    shards = shard_of(offsets, epoch_rows(offsets, window))
    n_shards = len(offsets) - 1
    first = np.array([np.flatnonzero(shards == s)[0] for s in range(n_shards)])
    last = np.array([np.flatnonzero(shards == s)[-1] for s in range(n_shards)])
    active = np.cumsum(np.bincount(first, minlength=len(shards)) - np.bincount(last + 1, minlength=len(shards) + 1)[:-1])
    assert active.max() == window
    order = shard_order(np.diff(offsets), 0, 0)
    retired_at = np.sort(last)  # position of each retirement's last row, in order
    assert (first[order[window:]] > retired_at[:n_shards - window]).all()


def test_rows_come_uniformly_from_the_active_shards():
    # shards of 1 and 3 rows, both active: the first row is the single row's with probability 1/4
    firsts = [EpochOrder(np.array([0, 1, 4]), 2, seed, 0).take(0, 1)[0] for seed in range(4000)]
    assert abs(np.mean(np.array(firsts) == 0) - 0.25) < 0.03


def test_take_only_moves_forward():
    order = EpochOrder(np.array([0, 4, 8]), 1, seed=0, epoch=0)
    order.take(0, 5)
    with pytest.raises(ValueError, match=r"positions \[2, 4\) are outside \[5, 8\) of this epoch"):
        order.take(2, 2)


def test_bad_offsets_are_refused():
    with pytest.raises(ValueError, match=r"shard `offsets` must be non-decreasing ints from 0.*got \[0, 5, 3\]"):
        EpochOrder(np.array([0, 5, 3]), 2, seed=0, epoch=0)


# ------------------------------------------------------------ epochs through the sampler
@pytest.mark.parametrize("batch_size", [1, 6, 25, 131])
def test_batches_follow_the_epoch_sequence_whatever_the_batch_size(storage, offsets, batch_size):
    n = len(storage)
    sampler = RollingShardSampler(window=3, seed=5)
    rows = np.concatenate(draw(sampler, storage, batch_size, -(-2 * n // batch_size)))
    expected = np.concatenate([epoch_rows(offsets, 3, seed=5, epoch=e) for e in range(3)])
    assert np.array_equal(rows, expected[:len(rows)])
    assert (np.bincount(rows[:n], minlength=n) == 1).all()
    assert (np.bincount(rows[n:2 * n], minlength=n) == 1).all()


def test_replay_buffer_iterates_one_epoch_with_drop_last(storage, offsets):
    n = len(storage)
    sampler = RollingShardSampler(window=2, seed=1, drop_last=True)
    rb = TensorDictReplayBuffer(storage=storage, sampler=sampler, batch_size=40)
    batches = list(rb)
    assert len(batches) == n // 40
    rows = torch.cat([b["index"] for b in batches]).numpy()
    assert np.array_equal(rows, epoch_rows(offsets, 2, seed=1)[:len(rows)])
    step = torch.cat([b["step"] for b in batches])
    assert torch.equal(step, storage[torch.from_numpy(rows)]["step"])
    assert (sampler.epoch, sampler.position) == (1, 0)
    assert np.array_equal(rb.sample()["index"].numpy(), epoch_rows(offsets, 2, seed=1, epoch=1)[:40])


def test_replay_buffer_rolls_into_the_next_epoch_without_drop_last(storage, offsets):
    n = len(storage)
    rb = ReplayBuffer(storage=storage, sampler=RollingShardSampler(window=2), batch_size=40)
    batches = [b["step"] for b in rb]
    assert len(batches) == -(-n // 40)
    expected = np.concatenate([epoch_rows(offsets, 2), epoch_rows(offsets, 2, epoch=1)])[:40 * len(batches)]
    assert torch.equal(torch.cat(batches), storage[torch.from_numpy(expected)]["step"])


def test_seeds_decide_the_sequence(storage):
    a, b, c = (draw(RollingShardSampler(window=2, seed=s), storage, 30, 2) for s in (7, 7, 8))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def test_epochs_differ(offsets):
    assert not np.array_equal(epoch_rows(offsets, 2, epoch=0), epoch_rows(offsets, 2, epoch=1))


# ------------------------------------------------------------ ranks and resuming
@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_interleave_into_the_single_rank_sequence(storage, offsets, world_size):
    per_rank = [draw(RollingShardSampler(window=2, rank=r, world_size=world_size), storage, 9, 4)
                for r in range(world_size)]
    merged = np.empty(9 * world_size * 4, np.int64)
    for r, batches in enumerate(per_rank):
        merged[r::world_size] = np.concatenate(batches)
    sequence = np.concatenate([epoch_rows(offsets, 2), epoch_rows(offsets, 2, epoch=1)])
    assert np.array_equal(merged, sequence[:len(merged)])


def test_rank_defaults_to_torch_distributed(storage, offsets, monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda *a, **k: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda *a, **k: 2)
    rows = RollingShardSampler(window=2).sample(storage, 10)[0].numpy()
    assert np.array_equal(rows, epoch_rows(offsets, 2)[1:20:2])


def test_resume_under_another_world_size_continues_the_global_sequence(storage, offsets, tmp_path):
    first = RollingShardSampler(window=3, seed=2)
    draw(first, storage, 11, 2)
    first.dumps(tmp_path / "sampler")
    merged = np.empty(2 * 4 * 3, np.int64)
    for rank in range(2):
        resumed = RollingShardSampler(window=3, seed=0, rank=rank, world_size=2)
        resumed.loads(tmp_path / "sampler")
        merged[rank::2] = np.concatenate(draw(resumed, storage, 4, 3))
    assert np.array_equal(merged, epoch_rows(offsets, 3, seed=2)[22:46])


def test_state_dict_and_pickle_resume_exactly(storage):
    sampler = RollingShardSampler(window=2, seed=4, drop_last=True)
    draw(sampler, storage, 13, 3)
    state = json.loads(json.dumps(sampler.state_dict()))
    copy = pickle.loads(pickle.dumps(sampler))
    resumed = RollingShardSampler(window=5)
    resumed.load_state_dict(state)
    expected = draw(sampler, storage, 13, 9)
    for other in (resumed, copy):
        assert all(np.array_equal(x, y) for x, y in zip(draw(other, storage, 13, 9), expected))
    assert resumed.state_dict() == sampler.state_dict()


def test_replay_buffer_dumps_and_loads_resume_the_sequence(storage, offsets, tmp_path):
    rb = TensorDictReplayBuffer(storage=storage, sampler=RollingShardSampler(window=2, seed=3), batch_size=9)
    rb.sample(), rb.sample()
    rb.dumps(tmp_path / "ckpt")
    assert json.loads((tmp_path / "ckpt" / "sampler" / STATE_FILE).read_text())["position"] == 18
    again = TensorDictReplayBuffer(storage=ShardedStorage(storage.root), sampler=RollingShardSampler(window=2),
                                   batch_size=9)
    again.loads(tmp_path / "ckpt")
    assert np.array_equal(again.sample()["index"].numpy(), epoch_rows(offsets, 2, seed=3)[18:27])


def test_rows_added_by_refresh_join_at_the_next_epoch(tmp_path):
    root = write_synthetic(tmp_path / "ds", episodes=4, length=10, obs_shape=(1,), shard_rows=SHARD_ROWS)
    storage = RecordingStorage(root)  # prefetch hints at an epoch's end do not fix the next epoch's rows
    sampler = RollingShardSampler(window=2)
    head = draw(sampler, storage, 15, 1)
    write_synthetic(root, episodes=6, length=10, obs_shape=(1,))
    storage.refresh()
    rest = draw(sampler, storage, 25, 1)[0]
    assert np.array_equal(np.sort(np.concatenate(head + [rest])), np.arange(40))
    epoch1 = np.concatenate(draw(sampler, storage, 20, 3))
    assert np.array_equal(np.sort(epoch1), np.arange(60))
    assert (sampler.epoch, sampler.position) == (2, 0)
    write_synthetic(root, episodes=8, length=10, obs_shape=(1,))
    storage.refresh()
    epoch2 = np.concatenate(draw(sampler, storage, 20, 4))
    assert np.array_equal(np.sort(epoch2), np.arange(80))


# ------------------------------------------------------------ prefetch hints
def test_will_need_names_the_next_shards_to_enter(storage, offsets):
    recording = RecordingStorage(storage.root)
    sampler = RollingShardSampler(window=2, seed=3)
    batches = draw(sampler, recording, 5, 12)
    reference = EpochOrder(offsets, 2, 3, 0)
    reference.take(0, 60)
    for i, call in enumerate(recording.calls):
        entered = 2 + sum(end <= 5 * (i + 1) for end in reference.ends)
        assert call == reference.order[entered:entered + 2].tolist()
    announced = set(reference.order[:2].tolist())  # the first window enters at the epoch's start
    for batch, hint in zip(batches, recording.calls):
        assert set(shard_of(offsets, batch).tolist()) <= announced
        announced |= set(hint)
    assert len(announced) > 4


def test_upcoming_shards_continue_into_the_next_epoch(storage, offsets):
    sampler = RollingShardSampler(window=2, seed=9)
    n_shards = len(offsets) - 1
    with pytest.raises(RuntimeError, match=r"learns the shards at its first sample"):
        sampler.upcoming_shards(3)
    sampler.sample(storage, 1)
    sampler.reset()
    this, following = (shard_order(np.diff(offsets), 9, e).tolist() for e in (0, 1))
    assert sampler.upcoming_shards(n_shards) == this[2:] + following[:2]


# ------------------------------------------------------------ refusals
@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"window": 0}, ValueError, r"`window` must be a positive int, got 0"),
    ({"window": 2, "rank": 2, "world_size": 2}, ValueError, r"`rank` must be an int in \[0, 1\], got 2"),
    ({"window": 2, "rank": 1}, ValueError, r"`rank` and `world_size` go together: pass both or neither"),
    ({"window": 2, "drop_last": 1}, TypeError, r"`drop_last` must be a bool, got 1"),
    ({"window": 2, "seed": -1}, ValueError, r"`seed` must be an int >= 0, got -1"),
])
def test_bad_arguments_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match) as info:
        RollingShardSampler(**kwargs)
    assert "\n" not in str(info.value)


def test_storage_without_offsets_is_refused(storage):
    view = EpisodeView(storage, "episode < 3")
    with pytest.raises(TypeError, match=r"needs a storage with shard offsets .*got EpisodeView; sample a ShardedStorage"):
        RollingShardSampler(window=2).sample(view, 4)


def test_batch_larger_than_the_dataset_is_refused_with_drop_last(storage):
    sampler = RollingShardSampler(window=2, drop_last=True, rank=0, world_size=2)
    assert not sampler.can_sample(storage, 100)
    with pytest.raises(ValueError, match=r"batch_size \* world_size = 200 rows but the dataset holds \d+; lower"):
        sampler.sample(storage, 100)


def test_state_of_a_larger_dataset_is_refused(storage):
    sampler = RollingShardSampler(window=2)
    state = {**sampler.state_dict(), "epoch_rows": len(storage) + 5, "position": 3}
    sampler.load_state_dict(state)
    with pytest.raises(ValueError, match=rf"covers {len(storage) + 5} rows but the storage holds {len(storage)}"):
        sampler.sample(storage, 4)


@pytest.mark.parametrize(("content", "match"), [
    (b"[1, 2]", r"not a RollingShardSampler state \(RollingShardSampler state must be a dict, got list\)"),
    (b'{"seed": 0}', r"state needs keys \['drop_last', 'epoch', 'epoch_rows', 'position', 'window'\]"),
    (b'{"seed": 0, "window": 2, "epoch": 0, "position": 9, "epoch_rows": 4, "drop_last": false}',
     r"`position` 9 is past the epoch's 4 rows"),
    (b"{" + b" " * (1 << 16) + b"}", r"a sampler state is at most 65536 bytes"),
    (b"not json", r"not a RollingShardSampler state \(Expecting value"),
])
def test_bad_state_files_are_refused(tmp_path, content, match):
    (tmp_path / STATE_FILE).write_bytes(content)
    with pytest.raises(FormatError, match=match) as info:
        RollingShardSampler(window=2).loads(tmp_path)
    assert "\n" not in str(info.value)
