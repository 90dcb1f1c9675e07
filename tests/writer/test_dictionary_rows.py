"""``ShardWriter.create(dictionary_rows=...)``: zstd dictionaries trained on given sample rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from torchrl_ext import ShardedStorage, ShardWriter
from torchrl_ext.encodings import Zstd, train_dictionary


def _episode(rng, n: int, level: int) -> TensorDict:
    obs = np.clip(rng.normal(level, 8, (n + 1, 12, 12)), 0, 255).astype(np.uint8)
    done = torch.zeros(n, 1, dtype=torch.bool)
    done[-1] = True
    return TensorDict({"observation": torch.from_numpy(obs[:-1]), "action": torch.zeros(n, dtype=torch.int64),
                       "next": {"observation": torch.from_numpy(obs[1:]), "reward": torch.zeros(n, 1),
                                "done": done, "terminated": done.clone(), "truncated": torch.zeros_like(done)}}, [n])


def test_the_dictionary_is_trained_on_the_given_rows_and_rows_read_back_exactly(tmp_path):
    rng = np.random.default_rng(0)
    sample = np.clip(rng.normal(200, 8, (64, 12, 12)), 0, 255).astype(np.uint8)
    episodes = [_episode(rng, 30, 40 + 40 * i) for i in range(4)]
    with ShardWriter.create(tmp_path / "ds", encodings={"observation": Zstd(dictionary=True)},
                            dictionary_rows={"observation": sample}) as w:
        for ep in episodes:
            w.add_episode(ep)
    assert (tmp_path / "ds" / "dicts" / "observation.zdict").read_bytes() == train_dictionary(sample)
    st = ShardedStorage(tmp_path / "ds")
    got = st.get(np.arange(len(st)))
    assert torch.equal(got["observation"], torch.cat([e["observation"] for e in episodes]))
    assert torch.equal(got["next", "observation"], torch.cat([e["next", "observation"] for e in episodes]))


def test_the_default_still_trains_on_the_first_rows(tmp_path):
    rng = np.random.default_rng(1)
    episodes = [_episode(rng, 300, 60 * (i + 1)) for i in range(4)]
    with ShardWriter.create(tmp_path / "ds", encodings={"observation": Zstd(dictionary=True)}) as w:
        for ep in episodes:
            w.add_episode(ep)
    first = torch.cat([e["observation"] for e in episodes]).numpy()[:1200]  # held until >= 1,024 rows
    assert (tmp_path / "ds" / "dicts" / "observation.zdict").read_bytes() == train_dictionary(first)


@pytest.mark.parametrize("rows, found", [
    (np.zeros((64, 12, 11), np.uint8), "shape (64, 12, 11) and dtype uint8"),
    (np.zeros((64, 12, 12), np.float32), "shape (64, 12, 12) and dtype float32"),
    (np.zeros((3, 12, 12), np.uint8), "shape (3, 12, 12)"),
])
def test_sample_rows_of_another_shape_dtype_or_too_few_are_refused(tmp_path, rows, found):
    w = ShardWriter.create(tmp_path / "ds", encodings={"observation": Zstd(dictionary=True)},
                           dictionary_rows={"observation": rows})
    with pytest.raises(ValueError, match=r"expected at least 8 rows of shape \(12, 12\) and dtype uint8, got "
                       rf"an array of {found.replace('(', '[(]').replace(')', '[)]')}"):
        w.add_episode(_episode(np.random.default_rng(0), 10, 50))
        w.flush()
