"""Contract of torchrl_ext.compat.torchrl_buffers with the installed TorchRL.

``ConcurrentReads._sample`` restates TorchRL's ``TensorDictReplayBuffer._sample``
with the storage read moved outside the buffer's locks. A failure after a
TorchRL upgrade means that method changed: update
``torchrl_ext/compat/torchrl_buffers.py`` (and only it), then this test.
"""

from __future__ import annotations

import inspect
import threading

import numpy as np
import pytest
import torch
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
from torchrl.data.replay_buffers.replay_buffers.tensordict import TensorDictReplayBuffer as TorchRLBuffer

from torchrl_ext import ShardedExperienceReplay, ShardedStorage
from torchrl_ext.compat.torchrl_buffers import PRIVATE_NAMES, ConcurrentReads, reads_concurrently
from torchrl_ext.storages import EpisodeView
from torchrl_ext.synthetic import write_synthetic

FIX = "update torchrl_ext/compat/torchrl_buffers.py"


@pytest.fixture(scope="module")
def zstd_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("buffers") / "ds"
    return write_synthetic(root, episodes=12, length=(20, 60), obs_shape=(16, 16), shard_rows=150,
                           encodings={"observation": {"name": "zstd", "chunk_rows": 1, "dictionary": True}})


def test_torchrl_sample_still_reads_what_the_restatement_reads():
    fn = TorchRLBuffer._sample  # wrapped by pin_memory_output (no functools.wraps): the inner function
    inner = [c.cell_contents for c in fn.__closure__ or () if inspect.isfunction(c.cell_contents)]
    src = inspect.getsource(inner[0] if inner else fn)
    for piece in ("self._replay_lock", "self._write_lock", "self._sampler.sample(self._storage, batch_size)",
                  "self._sample_unit", "self._writer.tracks_generations", 'info["index"] = index',
                  "self._storage.get(_storage_index(index, self._storage))", "self._collate_fn(data)",
                  "self._transform"):
        assert piece in src, f"TorchRL's TensorDictReplayBuffer._sample no longer has {piece!r}: {FIX}"
    buf = TensorDictReplayBuffer(storage=LazyTensorStorage(4))
    for name in PRIVATE_NAMES:
        assert hasattr(buf, name), f"TorchRL's replay buffer has no {name}: {FIX}"


def test_dataset_buffers_read_outside_the_locks_and_others_do_not(zstd_root):
    rb = ShardedExperienceReplay(zstd_root, batch_size=8)
    assert isinstance(rb, ConcurrentReads) and reads_concurrently(rb)
    assert reads_concurrently(ShardedExperienceReplay(zstd_root, batch_size=8, where="episode % 2 = 0"))
    assert not reads_concurrently(TensorDictReplayBuffer(storage=LazyTensorStorage(4)))
    assert EpisodeView(ShardedStorage(zstd_root), "episode < 3").concurrent_reads is True


def _batches(rb, n: int, seed: int) -> list:
    torch.manual_seed(seed)
    return [rb.sample(return_info=True) for _ in range(n)]


def test_the_unlocked_path_returns_torchrls_batches(zstd_root):
    ours = ShardedExperienceReplay(zstd_root, batch_size=16)
    theirs = ShardedExperienceReplay(zstd_root, batch_size=16)
    theirs._storage.concurrent_reads = False  # TorchRL's own _sample
    assert not reads_concurrently(theirs)
    for (a, ia), (b, ib) in zip(_batches(ours, 5, 3), _batches(theirs, 5, 3), strict=True):
        assert (a == b).all()
        assert torch.equal(ia["index"], ib["index"])
        assert torch.equal(a["observation"], theirs._storage.get(ib["index"])["observation"])


def test_prefetch_threads_return_the_rows_their_indices_name(zstd_root):
    """Two prefetch threads decode at once; every batch still holds exactly the rows of its index."""
    rb = ShardedExperienceReplay(zstd_root, batch_size=32, prefetch=2)
    plain = ShardedStorage(zstd_root)
    seen = set()
    for _ in range(40):
        batch = rb.sample()
        idx = batch["index"]
        want = plain.get(idx)
        for key in (("observation",), ("next", "observation"), ("action",), ("next", "done")):
            assert torch.equal(batch[key], want[key]), key
        seen.update(idx.tolist())
    assert len(seen) > len(plain) // 2  # the batches really differ


def test_concurrent_gets_from_threads_equal_serial_gets(zstd_root):
    st = ShardedStorage(zstd_root)
    rng = np.random.default_rng(0)
    indices = [torch.from_numpy(rng.integers(0, len(st), 64)) for _ in range(24)]
    want = [st.get(i)["observation"].clone() for i in indices]
    got: list = [None] * len(indices)

    def work(k: int) -> None:
        for j in range(k, len(indices), 4):
            got[j] = st.get(indices[j])["observation"]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(torch.equal(a, b) for a, b in zip(got, want))
