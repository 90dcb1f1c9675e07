"""ShardedStorage inside unmodified TorchRL replay buffers, samplers, ensembles and DataLoaders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchrl.data import ReplayBufferEnsemble, TensorDictReplayBuffer
from torchrl.data.replay_buffers import RandomSampler, SamplerWithoutReplacement, SliceSampler
from torchrl.envs.transforms import Compose, RenameTransform

from torchrl_ext import FormatError, ShardedStorage
from torchrl_ext.storages import RowDataset, collate_rows
from torchrl_ext.synthetic import write_synthetic

from torchrl_ext.testing.synthetic_reference import check_rows, reference_rows

LENGTH = (4, 15)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    base = tmp_path_factory.mktemp("rb")
    a = write_synthetic(base / "a", episodes=12, length=LENGTH, obs_shape=(2, 3), shard_rows=16)
    b = write_synthetic(base / "b", episodes=5, length=LENGTH, obs_shape=(2, 3), shard_rows=9)
    return (a, reference_rows(12, LENGTH)), (b, reference_rows(5, LENGTH))


def _rows_of(batch, ref):
    """Global rows of a batch recovered from (episode, step) via the reference."""
    ep, st, _ = ref
    first = {int(e): int(np.flatnonzero(ep == e)[0]) for e in np.unique(ep)}
    return np.array([first[int(e)] + int(s) for e, s in zip(batch["episode"].reshape(-1), batch["step"].reshape(-1))]).reshape(batch["episode"].shape)


@pytest.mark.parametrize("prefetch", [None, 2])
def test_random_sampler(datasets, prefetch):
    (root, ref), _ = datasets
    torch.manual_seed(0)
    rb = TensorDictReplayBuffer(storage=ShardedStorage(root), sampler=RandomSampler(), batch_size=32, prefetch=prefetch)
    for _ in range(3):
        batch, info = rb.sample(return_info=True)
        check_rows(batch, info["index"].numpy(), ref)


def test_sampler_without_replacement_covers_each_row_once(datasets):
    (root, ref), _ = datasets
    storage = ShardedStorage(root)
    rb = TensorDictReplayBuffer(storage=storage, sampler=SamplerWithoutReplacement(), batch_size=10)
    seen = []
    for _ in range(len(storage) // 10):
        batch, info = rb.sample(return_info=True)
        check_rows(batch, info["index"].numpy(), ref)
        seen.append(info["index"].numpy())
    seen = np.concatenate(seen)
    assert len(np.unique(seen)) == len(seen) == (len(storage) // 10) * 10


@pytest.mark.parametrize("kwargs", [dict(traj_key="episode"), dict(end_key=("next", "done")), "trajectories"])
def test_slice_sampler_slices_stay_in_one_episode(datasets, kwargs):
    (root, ref), _ = datasets
    torch.manual_seed(1)
    storage = ShardedStorage(root)
    if kwargs == "trajectories":
        kwargs = dict(trajectories=storage.episodes, cache_values=True)
        assert storage.episodes.tolist() == ref[0].tolist()
    rb = TensorDictReplayBuffer(storage=storage, sampler=SliceSampler(slice_len=4, **kwargs), batch_size=16)
    if "trajectories" in kwargs:
        batch = rb.sample().reshape(4, 4)
    else:  # TorchRL scans every row for episode ends, and the storage says so
        with pytest.warns(UserWarning, match=r"SliceSampler without `trajectories=` reads all \d+ rows"):
            batch = rb.sample().reshape(4, 4)
    ep, st = batch["episode"], batch["step"]
    assert (ep == ep[:, :1]).all()
    assert (st[:, 1:] - st[:, :-1] == 1).all()
    check_rows(batch, _rows_of(batch, ref), ref)
    # the slice's last step is truncated, as SliceSampler marks it
    assert batch["next", "truncated"][:, -1].all()


def test_transform_applies_to_samples(datasets):
    (root, ref), _ = datasets
    rb = TensorDictReplayBuffer(storage=ShardedStorage(root), batch_size=8,
                                transform=Compose(RenameTransform(["observation"], ["pixels"])))
    batch, info = rb.sample(return_info=True)
    assert "observation" not in batch.keys()
    ep, st, _ = ref
    idx = info["index"].numpy()
    from torchrl_ext.synthetic import obs_value

    np.testing.assert_array_equal(batch["pixels"][:, 0, 0].numpy(), obs_value(ep[idx], st[idx]))


def test_ensemble_sample_from_all(datasets):
    (ra, refa), (rb_, refb) = datasets
    ens = ReplayBufferEnsemble(
        TensorDictReplayBuffer(storage=ShardedStorage(ra)),
        TensorDictReplayBuffer(storage=ShardedStorage(rb_)),
        batch_size=12, sample_from_all=True,
    )
    batch = ens.sample()
    assert batch.batch_size == (2, 6)
    assert batch[0]["index", "buffer_ids"].unique().tolist() == [0]
    assert batch[1]["index", "buffer_ids"].unique().tolist() == [1]
    check_rows(batch[0], batch[0]["index", "index"].numpy(), refa)
    check_rows(batch[1], batch[1]["index", "index"].numpy(), refb)


def test_ensemble_with_weights(datasets):
    (ra, refa), (rb_, refb) = datasets
    torch.manual_seed(3)
    ens = ReplayBufferEnsemble(
        TensorDictReplayBuffer(storage=ShardedStorage(ra)),
        TensorDictReplayBuffer(storage=ShardedStorage(rb_)),
        batch_size=64, num_buffer_sampled=4, p=[0.0, 1.0],
    )
    batch = ens.sample()
    assert batch.batch_size == (4, 16)
    assert batch["index", "buffer_ids"].unique().tolist() == [1]
    flat = batch.reshape(-1)
    check_rows(flat, flat["index", "index"].numpy(), refb)


@pytest.mark.slow  # spawned workers, each importing torch
def test_dataloader_with_two_workers(datasets):
    (root, ref), _ = datasets
    ds = RowDataset(ShardedStorage(root))
    loader = DataLoader(ds, batch_size=16, num_workers=2, shuffle=False, collate_fn=collate_rows)
    batches = list(loader)
    rows = np.arange(len(ds))
    got = torch.cat([b["step"] for b in batches]).numpy()
    np.testing.assert_array_equal(got, ref[1])
    start = 0
    for b in batches:
        check_rows(b, rows[start:start + b.batch_size[0]], ref)
        start += b.batch_size[0]


def test_buffer_checkpoint_records_the_dataset_and_reopens_it(datasets, tmp_path):
    (a, ref_a), (b, _) = datasets
    rb = TensorDictReplayBuffer(storage=ShardedStorage(a), sampler=RandomSampler(), batch_size=16)
    rb.sample()
    rb.dumps(tmp_path / "ckpt")
    assert not list((tmp_path / "ckpt" / "storage").glob("*.memmap"))  # the rows stay where they are
    other = TensorDictReplayBuffer(storage=ShardedStorage(b), sampler=RandomSampler(), batch_size=16)
    other.loads(tmp_path / "ckpt")
    assert other.storage.root == a.absolute() and len(other.storage) == len(ShardedStorage(a))
    batch = other.sample()
    check_rows(batch, _rows_of(batch, ref_a), ref_a)


def test_corrupt_buffer_checkpoint_is_a_format_error(datasets, tmp_path):
    (a, _), _ = datasets
    rb = TensorDictReplayBuffer(storage=ShardedStorage(a), sampler=RandomSampler(), batch_size=4)
    rb.dumps(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "storage" / "sharded_storage.json").write_text('{"root": 3}')
    with pytest.raises(FormatError, match=r"sharded_storage\.json: expected a JSON object with `root` and `num_rows`"):
        rb.loads(tmp_path / "ckpt")
