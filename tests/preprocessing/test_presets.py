"""Preset functions for ``preprocess``: values against direct references."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tensordict import TensorDict

from torchrl_ext import ShardedStorage
from torchrl_ext.preprocessing import FrameStack, Grayscale, Resize, ToFloat, chain
from torchrl_ext.synthetic import obs_value, write_synthetic


def _batch(obs: torch.Tensor, nxt: bool = True) -> TensorDict:
    data = {"observation": obs, "action": torch.arange(len(obs))}
    if nxt:
        data["next"] = {"observation": obs.flip(0).clone()}
    return TensorDict(data, [len(obs)])


def _resize_reference(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    y = F.interpolate(x.float().unsqueeze(1), size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return y.squeeze(1).round().clamp(0, 255).to(torch.uint8)


def test_resize_matches_interpolate_on_both_keys():
    g = torch.Generator().manual_seed(0)
    obs = torch.randint(0, 256, (3, 20, 16), dtype=torch.uint8, generator=g)
    out = Resize(10, 8)(_batch(obs))
    assert out["observation"].dtype == torch.uint8
    assert torch.equal(out["observation"], _resize_reference(obs, 10, 8))
    assert torch.equal(out["next", "observation"], _resize_reference(obs.flip(0), 10, 8))
    assert torch.equal(out["action"], torch.arange(3))


def test_resize_channels_last_resizes_each_channel():
    g = torch.Generator().manual_seed(1)
    obs = torch.randint(0, 256, (2, 12, 12, 3), dtype=torch.uint8, generator=g)
    out = Resize(6, 4)(_batch(obs, nxt=False))["observation"]
    assert out.shape == (2, 6, 4, 3)
    for c in range(3):
        assert torch.equal(out[..., c], _resize_reference(obs[..., c], 6, 4))


def test_grayscale_uses_bt601_weights_channels_last_and_first():
    g = torch.Generator().manual_seed(2)
    rgb = torch.randint(0, 256, (4, 5, 7, 3), dtype=torch.uint8, generator=g)
    expected = (rgb.double() @ torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)).round().to(torch.uint8)
    last = Grayscale()(_batch(rgb, nxt=False))["observation"]
    first = Grayscale()(_batch(rgb.movedim(-1, 1).contiguous(), nxt=False))["observation"]
    assert last.shape == (4, 5, 7)
    assert (last.int() - expected.int()).abs().max() <= 1  # float32 sum vs float64 reference
    assert torch.equal(first, last)


def test_grayscale_refuses_frames_without_three_channels():
    with pytest.raises(ValueError, match=r"`Grayscale` expects RGB frames with 3 channels last or first, got "
                                         r"frame shape \[5, 7\]"):
        Grayscale()(_batch(torch.zeros(2, 5, 7, dtype=torch.uint8)))


def test_to_float_divides_by_255():
    obs = torch.tensor([[0, 51, 255]], dtype=torch.uint8)
    out = ToFloat()(_batch(obs))
    assert out["observation"].dtype == torch.float32
    assert torch.allclose(out["observation"], torch.tensor([[0.0, 0.2, 1.0]]))


def test_to_float_refuses_non_uint8():
    with pytest.raises(ValueError, match=r"`ToFloat` expects uint8 \('observation',\), got torch.float32"):
        ToFloat()(_batch(torch.zeros(2, 3)))


@pytest.mark.parametrize(("cls", "kwargs", "match"), [
    (Resize, {"height": 0, "width": 4}, r"`height` must be a positive int, got 0"),
    (Resize, {"height": 4, "width": 2.5}, r"`width` must be a positive int, got 2.5"),
    (Grayscale, {"key": ""}, r"`key` must be a non-empty column name"),
])
def test_bad_arguments(cls, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        cls(**kwargs)


def test_missing_key_names_the_columns():
    with pytest.raises(ValueError, match=r"the batch has no 'pixels' column \(found \['action', 'next/observation', 'observation'\]\)"):
        ToFloat(key="pixels")(_batch(torch.zeros(1, 2, dtype=torch.uint8)))


@pytest.fixture
def dataset(tmp_path):
    return write_synthetic(tmp_path / "ds", episodes=3, length=(3, 6), obs_shape=(4, 4), shard_rows=7)


def _expected_stack(storage: ShardedStorage, rows: np.ndarray, n: int) -> np.ndarray:
    """Row by row: frames r-n+1..r of the same episode, the first frame repeated."""
    first, _ = storage.episode_bounds
    out = []
    for r in rows:
        td = storage.get(int(r))
        e, s = int(td["episode"]), int(td["step"])
        out.append([obs_value(e, max(s - k, 0)) for k in range(n - 1, -1, -1)])
    assert len(first) == 3
    return np.asarray(out, dtype=np.uint8)


@pytest.mark.parametrize("batch", [(0, None), (2, 9), (5, 6), (11, None)])
def test_frame_stack_does_not_depend_on_batching(dataset, batch):
    storage = ShardedStorage(dataset)
    rows = np.arange(batch[0], batch[1] or len(storage))
    td = storage.get(torch.as_tensor(rows))
    out = FrameStack(dataset, 3)(td)
    assert out["observation"].shape == (len(rows), 3, 4, 4)
    assert np.array_equal(out["observation"][:, :, 0, 0].numpy(), _expected_stack(storage, rows, 3))
    nxt = storage.get(torch.as_tensor(rows))["next", "observation"][:, None]
    assert torch.equal(out["next", "observation"], torch.cat([out["observation"][:, 1:], nxt], 1))


def test_frame_stack_of_scattered_rows(dataset):
    storage = ShardedStorage(dataset)
    rows = np.array([7, 0, len(storage) - 1, 4])
    out = FrameStack(dataset, 4)(storage.get(torch.as_tensor(rows)))
    assert np.array_equal(out["observation"][:, :, 0, 0].numpy(), _expected_stack(storage, rows, 4))


def test_chain_passes_history_frames_through_earlier_steps(dataset):
    storage = ShardedStorage(dataset)
    rows = np.arange(3, 12)
    fn = chain(Resize(2, 2), FrameStack(dataset, 2), ToFloat())
    out = fn(storage.get(torch.as_tensor(rows)))
    assert out["observation"].shape == (9, 2, 2, 2) and out["observation"].dtype == torch.float32
    expected = _expected_stack(storage, rows, 2).astype(np.float32) / 255  # constant frames survive resize
    assert np.allclose(out["observation"][:, :, 1, 1].numpy(), expected)
    assert fn.steps[1].before is not None and fn.steps[1].before.steps == (fn.steps[0],)


def test_chain_pickles_without_its_open_storage(dataset):
    stack = FrameStack(dataset, 2)
    stack(ShardedStorage(dataset).get(torch.arange(2)))
    again = pickle.loads(pickle.dumps(chain(Grayscale(), stack)))
    assert again.steps[1].root == str(dataset) and again.steps[1].n == 2


def test_chain_needs_steps():
    with pytest.raises(ValueError, match=r"`chain` needs at least one step"):
        chain()
