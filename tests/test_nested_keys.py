"""Nested observations (``("observation", "image")``, ``("observation", "state")``) through every stage:
writer, next values per leaf, preprocess presets, export, event windows, samplers and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from torchrl.data import TensorDictReplayBuffer

from torchrl_ext import ShardedStorage, ShardWriter, preprocess
from torchrl_ext.cli import main
from torchrl_ext.events import EventIndex, EventWindowDataset, WindowQuery
from torchrl_ext.export import export_episodes
from torchrl_ext.preprocessing import Grayscale, ToFloat, chain
from torchrl_ext.samplers import EventSliceSampler
from torchrl_ext.storages import EpisodeView

LENGTHS = (5, 7, 6)
IMAGE, STATE = ("observation", "image"), ("observation", "state")


def _frames(e: int, t: np.ndarray) -> np.ndarray:
    """[len(t), 4, 4, 3] uint8: every pixel of step t of episode e is (e, t, 2t)."""
    px = np.stack([np.full_like(t, e), t, 2 * t], -1).astype(np.uint8)
    return np.broadcast_to(px[:, None, None, :], (len(t), 4, 4, 3)).copy()


def _episode(e: int, n: int) -> TensorDict:
    t = np.arange(n + 1)
    state = np.stack([np.full(n + 1, e), t], 1).astype(np.float32)
    done = np.zeros((n, 1), bool)
    done[-1] = True
    return TensorDict({
        "observation": {"image": torch.from_numpy(_frames(e, t)[:-1]), "state": torch.from_numpy(state[:-1])},
        "action": torch.arange(n) % 3,
        "next": {"observation": {"image": torch.from_numpy(_frames(e, t)[1:]), "state": torch.from_numpy(state[1:])},
                 "reward": torch.ones(n, 1), "done": torch.from_numpy(done)},
    }, [n])


@pytest.fixture(scope="module")
def nested(tmp_path_factory):
    root = tmp_path_factory.mktemp("nested") / "ds"
    with ShardWriter.create(root, shard_rows=8, encodings={IMAGE: "zstd"}) as writer:
        for e, n in enumerate(LENGTHS):
            writer.add_episode(_episode(e, n), metadata={"level": e * 10}, events=[(2, "hit", 1.0)])
    EventIndex.build(root)
    return root


def _luma(e: int, t: np.ndarray) -> np.ndarray:
    return (0.299 * e + 0.587 * t + 0.114 * 2 * t).round()


def test_next_values_per_leaf_across_shards(nested):
    storage = ShardedStorage(nested)
    td = storage[np.arange(len(storage))]
    assert storage.num_shards == 3 and [c.encoding for c in storage.manifest.schema if c.key == IMAGE] == ["zstd"]
    start = 0
    for e, n in enumerate(LENGTHS):
        ep, t = td[start:start + n], np.arange(n)
        np.testing.assert_array_equal(ep["next", "observation", "state"][:, 1].numpy(), t + 1)
        np.testing.assert_array_equal(ep["next", "observation", "image"].numpy(), _frames(e, t + 1))
        np.testing.assert_array_equal(ep["observation", "image"].numpy(), _frames(e, t))
        start += n


def test_preprocess_presets_on_a_nested_key(nested, tmp_path):
    out = preprocess(nested, chain(Grayscale(key=IMAGE), ToFloat(key=IMAGE)), tmp_path / "gray", num_workers=0,
                     executor="serial", pbar=False, encodings={IMAGE: "raw"})
    td = out[np.arange(len(out))]
    assert td[IMAGE].shape == (sum(LENGTHS), 4, 4) and td[IMAGE].dtype == torch.float32
    start = 0
    for e, n in enumerate(LENGTHS):
        t = np.arange(n)
        np.testing.assert_allclose(td[start:start + n][IMAGE][:, 0, 0].numpy() * 255, _luma(e, t), atol=1e-4)
        np.testing.assert_allclose(td[start:start + n]["next", *IMAGE][:, 3, 3].numpy() * 255, _luma(e, t + 1),
                                   atol=1e-4)
        start += n
    assert torch.equal(td[STATE], ShardedStorage(nested)[np.arange(len(out))][STATE])  # untouched leaf


def test_cli_preprocess_takes_a_nested_key_path(nested, tmp_path, capsys):
    code = main(["preprocess", str(nested), str(tmp_path / "g"), "--preset", "grayscale", "--key",
                 "observation/image", "--executor", "serial", "--no-progress"])
    assert code == 0
    assert capsys.readouterr().out.strip().endswith("observation/image uint8 [4, 4]")
    frames = ShardedStorage(tmp_path / "g")[[0, 1]][IMAGE]
    np.testing.assert_array_equal(frames[:, 0, 0].numpy(), _luma(0, np.arange(2)))


def test_a_missing_nested_key_names_what_exists(nested, tmp_path):
    with pytest.raises(ValueError, match=r"the batch has no 'observation/pixels' column \(found .*'observation/image'"):
        preprocess(nested, Grayscale(key=("observation", "pixels")), tmp_path / "x", num_workers=0,
                   executor="serial", pbar=False)


def test_export_of_a_view_keeps_nested_columns_and_encodings(nested, tmp_path):
    out = export_episodes(EpisodeView(nested, "level >= 10"), tmp_path / "late", progress=False)
    assert out.num_episodes == 2 and len(out) == LENGTHS[1] + LENGTHS[2]
    td = out[np.arange(len(out))]
    np.testing.assert_array_equal(td[IMAGE][:LENGTHS[1]].numpy(), _frames(1, np.arange(LENGTHS[1])))
    np.testing.assert_array_equal(td["next", *STATE][-1].numpy(), [2, LENGTHS[2]])  # a final observation
    assert {c.key: c.encoding for c in out.manifest.schema}[IMAGE] == "zstd"


def test_event_windows_and_sampler_carry_nested_leaves(nested):
    ds = EventWindowDataset(nested, WindowQuery(event_regex="hit", win_len=3, bias=2))
    assert len(ds) == 3
    item = ds[1]  # episode 1, event at step 2: steps [2 + 2 - 3, 2 + 2)
    assert item["timestamp"].tolist() == [1, 2, 3]
    np.testing.assert_array_equal(np.asarray(item["observation"]["image"]), _frames(1, np.arange(1, 4)))
    np.testing.assert_array_equal(np.asarray(item["observation"]["state"])[:, 1], [1, 2, 3])

    storage = ShardedStorage(nested)
    rb = TensorDictReplayBuffer(storage=storage, batch_size=6,
                                sampler=EventSliceSampler(storage, WindowQuery(event_regex="hit", win_len=3, bias=2),
                                                          seed=0))
    batch = rb.sample().reshape(2, 3)
    np.testing.assert_array_equal(batch[STATE][..., 1].numpy(), [[1, 2, 3], [1, 2, 3]])
    np.testing.assert_array_equal(batch[IMAGE][..., 0, 0, 0], batch[STATE][..., 0].to(torch.uint8))
