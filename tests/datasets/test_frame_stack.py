"""Frame stacks read in one call per batch, against stacks built frame by frame from a raw dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchrl_ext import ShardedStorage
from torchrl_ext.datasets import FrameStackStorage
from torchrl_ext.encodings import Zstd
from torchrl_ext.synthetic import write_synthetic

ARGS = {"episodes": 8, "length": (2, 14), "obs_shape": (6, 5), "shard_rows": 7}
STACK = 4


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    d = tmp_path_factory.mktemp("stacks")
    return {
        "raw": write_synthetic(d / "raw", **ARGS),
        "zstd frames": write_synthetic(d / "z1", **ARGS, encodings={"observation": Zstd(chunk_rows=1)}),
        "zstd chunks": write_synthetic(d / "z4", **ARGS, encodings={"observation": Zstd(chunk_rows=4)}),
    }


def _naive(raw: ShardedStorage, rows: np.ndarray, pad: str) -> tuple[np.ndarray, np.ndarray]:
    """Each stack built frame by frame: ``stack`` frames up to the row inside its episode, and the next
    observation's stack ending with the row's stored next observation."""
    first, _ = raw.episode_bounds
    frames = raw[:]["observation"].numpy()
    nxt = raw[:]["next", "observation"].numpy()
    obs_out, next_out = [], []
    for r in rows.tolist():
        e = int(np.searchsorted(first, r, side="right") - 1)
        hist = []
        for k in range(r - STACK + 1, r + 1):
            if k >= first[e]:
                hist.append(frames[k])
            else:
                hist.append(frames[first[e]] if pad == "first" else np.zeros_like(frames[r]))
        obs_out.append(np.stack(hist))
        next_out.append(np.stack(hist[1:] + [nxt[r]]))
    empty = np.zeros((0, STACK, *frames.shape[1:]), frames.dtype)
    return (np.stack(obs_out) if obs_out else empty), (np.stack(next_out) if next_out else empty)


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(data=st.data(), pad=st.sampled_from(["zeros", "first"]))
def test_stacks_equal_frame_by_frame_reference(roots, data, pad):
    raw = ShardedStorage(roots["raw"])
    rows = np.asarray(data.draw(st.lists(st.integers(0, len(raw) - 1), max_size=30)), np.int64)
    obs, nxt = _naive(raw, rows, pad)
    for name, root in roots.items():
        got = FrameStackStorage(root, stack=STACK, pad=pad)[rows]
        np.testing.assert_array_equal(got["observation"].numpy(), obs, err_msg=name)
        np.testing.assert_array_equal(got["next", "observation"].numpy(), nxt, err_msg=name)


@pytest.mark.parametrize("pad", ["zeros", "first"])
def test_every_row_in_order_and_reversed(roots, pad):
    raw = ShardedStorage(roots["raw"])
    for rows in (np.arange(len(raw)), np.arange(len(raw))[::-1].copy()):
        obs, nxt = _naive(raw, rows, pad)
        for name, root in roots.items():
            got = FrameStackStorage(root, stack=STACK, pad=pad)[rows]
            np.testing.assert_array_equal(got["observation"].numpy(), obs, err_msg=name)
            np.testing.assert_array_equal(got["next", "observation"].numpy(), nxt, err_msg=name)


def test_other_columns_are_the_plain_rows(roots):
    rows = np.array([0, 5, 5, 30, 41])
    plain = ShardedStorage(roots["zstd frames"])[rows]
    got = FrameStackStorage(roots["zstd frames"], stack=STACK)[rows]
    for key in plain.keys(include_nested=True, leaves_only=True):
        if key not in ("observation", ("next", "observation")):
            assert torch.equal(got[key], plain[key]), key
    assert not got["done"].any() and got["done"].shape == (5, 1)


def test_observation_and_next_observation_are_one_stack_shifted(roots):
    got = FrameStackStorage(roots["zstd chunks"], stack=STACK)[np.array([3, 17, 17, 50])]
    assert torch.equal(got["observation"][:, 1:], got["next", "observation"][:, :-1])


def test_empty_index(roots):
    got = FrameStackStorage(roots["zstd frames"], stack=STACK)[np.zeros(0, np.int64)]
    assert got["observation"].shape == (0, STACK, 6, 5) and got["next", "observation"].shape == (0, STACK, 6, 5)


def test_two_dimensional_index_keeps_its_shape(roots):
    rows = np.array([[1, 2, 3], [40, 41, 42]])
    raw = ShardedStorage(roots["raw"])
    obs, _ = _naive(raw, rows.reshape(-1), "zeros")
    got = FrameStackStorage(roots["zstd frames"], stack=STACK)[rows]
    assert got.batch_size == torch.Size([2, 3])
    np.testing.assert_array_equal(got["observation"].numpy(), obs.reshape(2, 3, STACK, 6, 5))
