"""``ShardedExperienceReplay`` and TorchRL's ``load_dataset("torchrl_ext:<root>")``."""

from __future__ import annotations

import pytest
import torch
from torchrl.data.datasets import load_dataset
from torchrl.data.replay_buffers import SamplerWithoutReplacement

from torchrl_ext import ShardedExperienceReplay, ShardedStorage
from torchrl_ext.synthetic import write_synthetic


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    path = tmp_path_factory.mktemp("replay") / "ds"
    return write_synthetic(path, episodes=6, length=(4, 9), obs_shape=(3,), shard_rows=10)


def test_load_dataset_returns_rows_of_the_storage(root):
    rb = load_dataset(f"torchrl_ext:{root}", batch_size=16)
    storage = ShardedStorage(root)
    assert isinstance(rb, ShardedExperienceReplay) and rb.data_path == root and rb.data_path_root == root.parent
    assert len(rb) == len(storage)
    torch.manual_seed(0)
    batch = rb.sample()
    every = storage[torch.arange(len(storage))]
    by_step = {(int(e), int(s)): i for i, (e, s) in enumerate(zip(every["episode"], every["step"]))}
    rows = torch.tensor([by_step[int(e), int(s)] for e, s in zip(batch["episode"], batch["step"])])
    assert torch.equal(batch["observation"], every["observation"][rows])
    assert torch.equal(batch["next", "observation"], every["next", "observation"][rows])


def test_slices_stay_inside_one_episode(root):
    rb = load_dataset(f"torchrl_ext:{root}", batch_size=12, slice_len=4)
    torch.manual_seed(1)
    batch = rb.sample().reshape(3, 4)
    assert (batch["episode"] == batch["episode"][:, :1]).all()
    assert (batch["step"][:, 1:] - batch["step"][:, :-1] == 1).all()


def test_where_samples_only_the_selected_episodes(root):
    rb = ShardedExperienceReplay(root, batch_size=len(ShardedStorage(root)), where="episode IN (1, 4)",
                                 sampler=SamplerWithoutReplacement())
    got = rb.sample()
    lengths = ShardedStorage(root).episode_bounds[1]
    assert sorted(set(got["episode"].tolist())) == [1, 4]
    assert len(rb) == int(lengths[1] + lengths[4])


def test_without_replacement_sees_every_row_once(root):
    rb = ShardedExperienceReplay(root, batch_size=7, replacement=False)
    seen = torch.cat([rb.sample()["observation"] for _ in range(len(rb) // 7)])
    assert len({tuple(r.tolist()) for r in seen}) == len(seen)


def test_preprocess_with_swap_reads_the_new_dataset(root, tmp_path):
    rb = ShardedExperienceReplay(root, batch_size=4)
    raw = ShardedStorage(root)[[0, 1]]["observation"]
    new = rb.preprocess(lambda td: td.set("observation", td["observation"] * 2), num_workers=0,
                        dest=tmp_path / "double", swap=True, executor="serial")
    assert rb.data_path == tmp_path / "double" and torch.equal(new[[0, 1]]["observation"], raw * 2)
    assert torch.equal(rb.storage[[0, 1]]["observation"], raw * 2)


def test_delete_is_refused_and_the_dataset_stays(root):
    rb = ShardedExperienceReplay(root)
    with pytest.raises(PermissionError, match="is a dataset this buffer opened, not one it downloaded"):
        rb.delete()
    assert ShardedStorage(root).num_episodes == 6


def test_a_missing_dataset_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such"):
        load_dataset(f"torchrl_ext:{tmp_path / 'no_such'}")
