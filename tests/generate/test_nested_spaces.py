"""generate() from envs with Dict/Tuple observation and action spaces: one column per leaf, end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from generate_test_envs import DictEnv, TextEnv
from torchrl.data import TensorDictReplayBuffer
from torchrl.data.replay_buffers import SliceSampler

from torchrl_ext import ShardedStorage
from torchrl_ext.generate import WorkerFailed, generate

LEAVES = [("observation", "image"), ("observation", "state"), ("observation", "pair", "0"),
          ("observation", "pair", "1"), ("action", "button"), ("action", "stick")]


@pytest.fixture(scope="module")
def dict_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("nested") / "ds"
    generate(DictEnv, None, root, num_episodes=4, num_workers=2, max_steps=50, seed=3, shard_rows=16,
             progress=False, encodings={("observation", "image"): "zstd"})
    return root


def test_each_leaf_is_a_column_with_its_dtype(dict_dataset):
    storage = ShardedStorage(dict_dataset)
    td = storage[np.arange(len(storage))]
    assert {k for k in td.keys(include_nested=True, leaves_only=True) if k[0] in ("observation", "action")} == set(LEAVES)
    dtypes = {k: td[k].dtype for k in LEAVES}
    assert dtypes == {("observation", "image"): torch.uint8, ("observation", "state"): torch.float32,
                      ("observation", "pair", "0"): torch.int64, ("observation", "pair", "1"): torch.float64,
                      ("action", "button"): torch.int64, ("action", "stick"): torch.float32}
    encodings = {c.key: c.encoding for c in storage.manifest.schema}
    assert (encodings[("observation", "image")], encodings[("observation", "state")]) == ("zstd", "raw")


def test_values_and_next_observations_per_leaf(dict_dataset):
    storage = ShardedStorage(dict_dataset)
    first, length = storage.episode_bounds
    assert length.tolist() == [3 + s % 5 for s in range(3, 7)]  # CountingEnv: 3 + seed % 5 steps
    td = storage[np.arange(len(storage))]
    for e, (a, n) in enumerate(zip(first.tolist(), length.tolist())):
        seed, t = 3 + e, np.arange(n)
        ep = td[a:a + n]
        np.testing.assert_array_equal(ep["observation", "state"].numpy(), np.stack([np.full(n, seed), t], 1))
        np.testing.assert_array_equal(ep["next", "observation", "state"].numpy(),
                                      np.stack([np.full(n, seed), t + 1], 1))  # the last one from final/
        np.testing.assert_array_equal(ep["observation", "image"].numpy()[:, 0, 0, 0], 10 * t + seed)
        np.testing.assert_array_equal(ep["next", "observation", "image"].numpy()[:, 4, 4, 2], 10 * (t + 1) + seed)
        np.testing.assert_array_equal(ep["observation", "pair", "0"].numpy(), t + 1)
        np.testing.assert_array_equal(ep["next", "observation", "pair", "1"].numpy()[:, 1], t + 1)
        assert ((ep["action", "stick"] >= -1) & (ep["action", "stick"] <= 1)).all()
        assert set(ep["action", "button"].tolist()) <= {0, 1, 2}


def test_slices_through_a_torchrl_buffer(dict_dataset):
    storage = ShardedStorage(dict_dataset)
    rb = TensorDictReplayBuffer(storage=storage, batch_size=6,
                                sampler=SliceSampler(slice_len=3, trajectories=storage.episodes, cache_values=True))
    torch.manual_seed(0)
    batch = rb.sample().reshape(2, 3)
    state = batch["observation", "state"]
    assert (state[:, :, 0] == state[:, :1, 0]).all()  # one seed (episode) per slice
    assert (state[:, 1:, 1] - state[:, :-1, 1] == 1).all()  # consecutive steps
    assert (batch["next", "observation", "state"][..., 1] == state[..., 1] + 1).all()


def test_unstorable_observations_fail_and_leave_no_directory(tmp_path):
    with pytest.raises(WorkerFailed, match=r"`observation` holds str.*map it to numbers in the env"):
        generate(TextEnv, None, tmp_path / "ds", num_episodes=2, max_steps=50, progress=False)
    assert not (tmp_path / "ds").exists()
