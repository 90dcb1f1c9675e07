"""A `create` whose first episode fails leaves nothing behind; a dataset with committed rows is never removed."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from torchrl_ext import ShardedStorage, ShardWriter


def _episode(n: int = 4, dtype=torch.float32) -> TensorDict:
    done = torch.zeros(n, 1, dtype=torch.bool)
    done[-1] = True
    return TensorDict({"observation": torch.arange(n).to(dtype), "action": torch.zeros(n),
                       "next": {"reward": torch.ones(n, 1), "done": done}}, [n])


def test_failed_first_episode_removes_the_new_directory(tmp_path):
    root = tmp_path / "new" / "ds"
    with pytest.raises(TypeError, match="has dtype complex64; storable dtypes are"):
        with ShardWriter.create(root) as writer:
            writer.add_episode(_episode(dtype=torch.complex64))
    assert not root.exists()
    assert (tmp_path / "new").is_dir()  # only the directory `create` made is removed


def test_failed_first_episode_keeps_a_directory_the_user_made(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    with pytest.raises(RuntimeError, match="stop"):
        with ShardWriter.create(root):
            raise RuntimeError("stop")
    assert list(root.iterdir()) == []


def test_committed_episodes_survive_a_later_failure(tmp_path):
    root = tmp_path / "ds"
    with pytest.raises(TypeError, match="has dtype float64, the dataset expects float32"):
        with ShardWriter.create(root) as writer:
            writer.add_episode(_episode(3))
            writer.add_episode(_episode(5, torch.float64))
    storage = ShardedStorage(root)
    assert (storage.num_episodes, len(storage)) == (1, 3)
    assert storage[[0, 1, 2]]["observation"].tolist() == [0.0, 1.0, 2.0]


def test_a_failed_resume_never_removes_the_dataset(tmp_path):
    root = tmp_path / "ds"
    ShardWriter.create(root).close()  # an empty dataset, deliberately made
    with pytest.raises(RuntimeError, match="stop"):
        with ShardWriter.open(root):
            raise RuntimeError("stop")
    assert ShardedStorage(root).num_episodes == 0
