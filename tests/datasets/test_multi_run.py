"""``MultiRunStorage.get``: rows of several storages in request order, each value equal to its part's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchrl_ext import ShardedStorage
from torchrl_ext.datasets import MultiRunStorage
from torchrl_ext.storages import EpisodeView
from torchrl_ext.synthetic import write_synthetic


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("multi")
    enc = {"observation": {"name": "zstd", "chunk_rows": 1, "dictionary": False}}
    return [write_synthetic(base / f"r{i}", episodes=4 + i, length=(5, 30), obs_shape=(6, 6), shard_rows=40,
                            encodings=enc if i == 1 else None) for i in range(3)]


def _expected(parts, offsets, ep_offsets, rows):
    out = []
    for r in rows.tolist():
        k = int(np.searchsorted(offsets, r, side="right") - 1)
        td = parts[k].get([r - int(offsets[k])])
        if "episode" in td:
            td["episode"] = td["episode"] + int(ep_offsets[k])
        out.append(td)
    return torch.cat(out)


@pytest.mark.parametrize("wrap", ["sharded", "episode view"])
def test_rows_come_back_in_request_order_with_run_unique_episodes(roots, wrap):
    parts = [ShardedStorage(r) for r in roots]
    if wrap == "episode view":  # a part without read_arrays: the TensorDict path
        parts[2] = EpisodeView(parts[2], "episode >= 0")
    st = MultiRunStorage(parts, names=["a", "b", "c"])
    offsets = np.concatenate(([0], np.cumsum([len(p) for p in parts])))
    ep_offsets = np.concatenate(([0], np.cumsum([int(p.episodes.max()) + 1 for p in parts])))
    rows = np.random.default_rng(0).integers(0, len(st), 97)
    got = st.get(torch.from_numpy(rows))
    want = _expected(parts, offsets, ep_offsets, rows)
    assert got.batch_size == want.batch_size
    for key in want.keys(include_nested=True, leaves_only=True):
        assert torch.equal(got[key], want[key]), key
    assert torch.equal(got["episode"], st.episodes[torch.from_numpy(rows)])
    grid = st.get(torch.from_numpy(rows[:12].reshape(3, 4)))  # any index shape
    assert grid.batch_size == (3, 4) and torch.equal(grid["observation"][1, 2], want["observation"][6])
    one = st.get(torch.from_numpy(np.arange(int(offsets[1]), int(offsets[1]) + 5)))  # a single part
    assert torch.equal(one["observation"], parts[1].get(list(range(5)))["observation"])
