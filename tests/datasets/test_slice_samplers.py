"""NarrowSliceSampler: TorchRL's slice samplers' indices and info, from the flag columns alone."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
from torchrl.data.replay_buffers import SliceSampler, SliceSamplerWithoutReplacement

from torchrl_ext import ShardedStorage, ShardWriter
from torchrl_ext.datasets import (
    NarrowSliceSampler,
    NarrowSliceSamplerWithoutReplacement,
    ShardedExperienceReplay,
    episode_sampler,
)
from torchrl_ext.synthetic import make_episode

# Episodes shorter than a slice of 4 (2, 3) end inside slices when strict_length=False; shards of 8 rows cut episodes.
LENGTHS = [5, 2, 9, 3, 7, 4, 6, 8]
FLAGS = {("next", "done"), ("next", "terminated"), ("is_init",)}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("slices") / "ds"
    with ShardWriter.create(root, shard_rows=8) as writer:
        for e, n in enumerate(LENGTHS):
            td = make_episode(e, n, (4, 4), truncated=e % 3 == 1)
            is_init = torch.zeros(n, 1, dtype=torch.bool)
            is_init[0] = True
            td["is_init"] = is_init
            writer.add_episode(td)
    return root


@pytest.fixture
def storage(root):
    return ShardedStorage(root)


def boundaries(storage):
    return {"trajectories": {"trajectories": storage.episodes, "cache_values": True},
            "traj_key": {"traj_key": "episode", "cache_values": True},
            "end_key": {"end_key": ("next", "done"), "cache_values": True}}


def draws(sampler, storage, rounds, batch=8):
    torch.manual_seed(5)
    return [sampler.sample(storage, batch) for _ in range(rounds)]


@pytest.mark.filterwarnings("ignore:SliceSampler without `trajectories=`")
@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("given", ["trajectories", "traj_key", "end_key"])
@pytest.mark.parametrize("narrow_cls, torchrl_cls, rounds", [
    (NarrowSliceSampler, SliceSampler, 6),
    (NarrowSliceSamplerWithoutReplacement, SliceSamplerWithoutReplacement, 2),  # 2 x 2 of 8 episodes
])
def test_indices_and_info_are_torchrl_s(storage, given, strict, narrow_cls, torchrl_cls, rounds):
    kwargs = boundaries(storage)[given]
    if torchrl_cls is SliceSamplerWithoutReplacement:
        kwargs = {k: v for k, v in kwargs.items() if k != "cache_values"}
    ours = draws(narrow_cls(slice_len=4, strict_length=strict, **kwargs), storage, rounds)
    theirs = draws(torchrl_cls(slice_len=4, strict_length=strict, **kwargs), storage, rounds)
    for (index, info), (t_index, t_info) in zip(ours, theirs):
        assert torch.equal(index[0], t_index[0])
        assert info.keys() == t_info.keys() == {("next", "truncated"), ("next", "done"), ("next", "terminated"),
                                                "is_init"}
        for key in info:
            assert torch.equal(info[key], t_info[key]), key


def test_info_flags_are_the_rows_flags_across_episode_ends(storage):
    sampler = NarrowSliceSampler(slice_len=4, trajectories=storage.episodes, cache_values=True, strict_length=False)
    torch.manual_seed(2)
    index, info = sampler.sample(storage, 32)
    rows = storage[index[0]]
    assert rows["next", "done"].any() and not rows["next", "done"].all()  # some slices end with their episode
    assert torch.equal(info["next", "terminated"], rows["next", "terminated"])
    assert torch.equal(info["next", "done"], rows["next", "done"] | info["next", "truncated"])
    starts = torch.cat([torch.tensor([True]), rows["episode"][1:] != rows["episode"][:-1]])
    assert torch.equal(info["is_init"].view(-1), starts | info["next", "truncated"].view(-1).roll(1))


def test_sample_reads_only_the_flag_columns(storage, monkeypatch):
    asked = []
    gather = storage.reader.gather

    def recording(flat, keys=None):
        asked.append(None if keys is None else set(keys))
        return gather(flat, keys)

    monkeypatch.setattr(storage.reader, "gather", recording)
    sampler = NarrowSliceSampler(slice_len=4, trajectories=storage.episodes, cache_values=True)
    sampler.sample(storage, 8)
    sampler.sample(storage, 8)
    assert asked == [FLAGS, FLAGS]


def test_a_trajectory_key_scan_reads_the_key_and_the_flags(storage, monkeypatch):
    asked = []
    gather = storage.reader.gather
    monkeypatch.setattr(storage.reader, "gather",
                        lambda flat, keys=None: asked.append((len(flat), set(keys))) or gather(flat, keys))
    sampler = NarrowSliceSampler(slice_len=4, traj_key="episode", cache_values=True)
    with pytest.warns(UserWarning, match="trajectories=storage.episodes"):
        sampler.sample(storage, 8)
    sampler.sample(storage, 8)  # TorchRL reads storage[:] on every call, then the sampled rows
    keys = {("episode",)} | FLAGS
    assert asked == [(len(storage), keys), (8, keys), (len(storage), keys), (8, keys)]


def test_a_storage_that_cannot_narrow_is_read_whole():
    episode = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 2])
    done = torch.cat([episode[1:] != episode[:-1], torch.tensor([True])])[:, None]
    data = TensorDict({"episode": episode, "next": {"done": done, "terminated": done}}, batch_size=[9])
    plain = LazyTensorStorage(9)
    plain.set(torch.arange(9), data)
    ours = draws(NarrowSliceSampler(slice_len=3, traj_key="episode"), plain, 3, batch=6)
    theirs = draws(SliceSampler(slice_len=3, traj_key="episode"), plain, 3, batch=6)
    for (index, info), (t_index, t_info) in zip(ours, theirs):
        assert torch.equal(index[0], t_index[0]) and torch.equal(info["next", "done"], t_info["next", "done"])


@pytest.mark.parametrize("replacement, cls", [(True, NarrowSliceSampler),
                                               (False, NarrowSliceSamplerWithoutReplacement)])
def test_episode_sampler_builds_narrow_samplers(storage, replacement, cls):
    sampler = episode_sampler(storage, slice_len=4, replacement=replacement)
    assert type(sampler) is cls and sampler.slice_len == 4 and sampler.strict_length is True


def test_replay_buffer_batches_match_torchrl_s_sampler(root, storage):
    rb = ShardedExperienceReplay(root, batch_size=8, slice_len=4)
    theirs = TensorDictReplayBuffer(storage=storage, batch_size=8, sampler=SliceSampler(
        slice_len=4, trajectories=storage.episodes, cache_values=True))
    assert type(rb.sampler) is NarrowSliceSampler
    for seed in range(3):
        torch.manual_seed(seed)
        ours = rb.sample()
        torch.manual_seed(seed)
        expected = theirs.sample()
        assert set(ours.keys(True, True)) == set(expected.keys(True, True))
        for key in expected.keys(True, True):
            assert torch.equal(ours[key], expected[key]), key


def test_an_episode_view_narrows_too_and_samples_as_torchrl_does(root, monkeypatch):
    """``ShardedExperienceReplay(where=...)`` slice-samples an ``EpisodeView``: it reads only the flags as well."""
    from torchrl_ext.storages import EpisodeView

    view = EpisodeView(ShardedStorage(root), "episode NOT IN (1, 4)")
    asked = []
    gather = view.base.reader.gather
    monkeypatch.setattr(view.base.reader, "gather",
                        lambda flat, keys=None: asked.append(None if keys is None else set(keys)) or gather(flat, keys))
    ours = draws(NarrowSliceSampler(slice_len=4, trajectories=view.episodes, cache_values=True), view, 4)
    assert asked == [FLAGS] * 4
    theirs = draws(SliceSampler(slice_len=4, trajectories=view.episodes, cache_values=True), view, 4)
    for (index, info), (t_index, t_info) in zip(ours, theirs):
        assert torch.equal(index[0], t_index[0])
        for key in t_info:
            assert torch.equal(info[key], t_info[key]), key
    flags = view.narrow(sorted(FLAGS))
    rows = torch.tensor([[0, 5], [len(view) - 1, 7]])
    assert flags is view.narrow(sorted(FLAGS)) and len(flags) == len(view)
    for key in FLAGS:
        assert torch.equal(flags[rows][key], view[rows][key]), key


def test_an_episode_view_pickles_by_path(root):
    import pickle

    from torchrl_ext.storages import EpisodeView

    view = EpisodeView(ShardedStorage(root), "episode >= 3")
    view.narrow([("next", "done")])
    back = pickle.loads(pickle.dumps(view))
    assert len(back) == len(view) and torch.equal(back[:]["observation"], view[:]["observation"])
