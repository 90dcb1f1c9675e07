"""ShardedStorage.narrow: reads of some keys only, with the storage's values; everything else is the storage's."""

from __future__ import annotations

import pickle

import pytest
import torch

from torchrl_ext import ShardedStorage
from torchrl_ext.datasets import FrameStackStorage
from torchrl_ext.storages import NarrowStorage
from torchrl_ext.synthetic import write_synthetic

KEYS = [("next", "done"), "action", ("next", "observation")]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    # odd episodes store no final observation: their last ("next", "observation") is rebuilt as zeros
    return write_synthetic(tmp_path_factory.mktemp("narrow") / "ds", episodes=5, length=(3, 7), obs_shape=(2, 3),
                           shard_rows=6)


@pytest.mark.parametrize("index", [
    torch.tensor([[0, 5], [20, 3]]),
    (torch.tensor([1, 2, 3, 4, 5, 6, 7, 8]),),
    [7, 0, 7],
    4,
    slice(2, 9),
], ids=["2d", "tuple", "list", "int", "slice"])
def test_reads_only_the_keys_with_the_storage_s_values(root, index):
    storage = ShardedStorage(root)
    got = storage.narrow(KEYS)[index]
    full = storage[index]
    assert set(got.keys(True, True)) == {("next", "done"), "action", ("next", "observation")}
    assert got.batch_size == full.batch_size
    for key in KEYS:
        assert torch.equal(got[key], full[key]), key


def test_rebuilt_next_values_at_episode_ends(root):
    storage = ShardedStorage(root)
    first, length = storage.episode_bounds
    ends = torch.from_numpy(first + length - 1)
    got = storage.narrow([("next", "observation")])[ends]
    assert torch.equal(got["next", "observation"], storage[ends]["next", "observation"])
    assert not got["next", "observation"][1].any() and got["next", "observation"][0].any()  # odd: zeros


def test_keys_the_storage_does_not_hold_are_left_out(root):
    got = ShardedStorage(root).narrow(["is_init", ("next", "done")])[[0, 1]]
    assert list(got.keys(True, True)) == [("next", "done")]
    assert got["next", "done"].view(-1).tolist() == [False, False]


def test_everything_else_is_the_storage_s(root):
    storage = ShardedStorage(root)
    view = storage.narrow(KEYS)
    assert isinstance(view, NarrowStorage) and view.storage is storage
    assert len(view) == len(storage) and view.shape == storage.shape and view.ndim == 1
    assert torch.equal(view.episodes, storage.episodes) and view.num_episodes == 5
    assert view.keys == (("next", "done"), ("action",), ("next", "observation"))


def test_the_same_keys_give_the_same_view(root):
    storage = ShardedStorage(root)
    assert storage.narrow(KEYS) is storage.narrow(list(KEYS))
    assert storage.narrow(KEYS) is not storage.narrow(KEYS[:2])


def test_a_pickled_storage_narrows_again(root):
    storage = ShardedStorage(root)
    storage.narrow(KEYS)
    again = pickle.loads(pickle.dumps(storage))
    assert torch.equal(again.narrow(KEYS)[[3, 4]]["action"], storage[[3, 4]]["action"])


@pytest.mark.parametrize("keys", ["action", ("next", "done")])
def test_a_single_key_is_refused(root, keys):
    with pytest.raises(TypeError, match=r"`keys` must be a list of keys, got the single key .*; pass \["):
        ShardedStorage(root).narrow(keys)


def test_writes_are_refused(root):
    view = ShardedStorage(root).narrow(KEYS)
    with pytest.raises(RuntimeError, match="only reads; write through the storage"):
        view[0] = view[0]


@pytest.mark.parametrize("layout", ["torchrl_ext", "torchrl"])
def test_a_row_view_storage_gives_its_rows_with_only_the_keys(root, layout):
    storage = FrameStackStorage(root, stack=2, layout=layout)
    keys = [("next", "done"), ("next", "terminated"), "observation", "is_init"]
    index = torch.tensor([0, 4, 9, 17])
    got = storage.narrow(keys)[index]
    full = storage[index]
    assert set(got.keys(True, True)) == {("next", "done"), ("next", "terminated"), "observation"}
    for key in keys[:3]:
        assert torch.equal(got[key], full[key]), key
    assert got["observation"].shape == (4, 2, 2, 3)
