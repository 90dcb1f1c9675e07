"""Batches read in DataLoader workers are allocated in shared memory and equal the same rows read in-process."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from torchrl_ext import ShardedStorage
from torchrl_ext.datasets import MultiRunStorage, loader_context
from torchrl_ext.datasets.frame_stack import FrameStackStorage
from torchrl_ext.storages import RowDataset, collate_rows
from torchrl_ext.storages.batch_memory import MIN_SHARED_BYTES, SharedArray, as_tensor, batch_array
from torchrl_ext.synthetic import write_synthetic


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("shm")
    zstd = {"observation": {"name": "zstd", "chunk_rows": 1, "dictionary": False}}
    return [write_synthetic(base / f"r{i}", episodes=5, length=(20, 60), obs_shape=(32, 32), shard_rows=90,
                            encodings=zstd if i else None) for i in range(2)]


def _storages(roots):
    yield "sharded", ShardedStorage(roots[0])
    yield "stack 4", FrameStackStorage(roots[1], stack=4)
    yield "two runs, stack 4", MultiRunStorage([FrameStackStorage(r, stack=4) for r in roots])


@pytest.mark.parametrize("which", ["sharded", "stack 4", "two runs, stack 4"])
def test_worker_batches_equal_in_process_reads(roots, which):
    st = dict(_storages(roots))[which]
    batches = [np.random.default_rng(k).integers(0, len(st), 96).tolist() for k in range(6)]
    loader = DataLoader(RowDataset(st), batch_sampler=batches, collate_fn=collate_rows, num_workers=2,
                        multiprocessing_context=loader_context())
    for idx, got in zip(batches, loader, strict=True):
        want = st.get(idx)
        for key in want.keys(include_nested=True, leaves_only=True):
            assert torch.equal(got[key], want[key]), key
        assert got["observation"].is_shared()  # allocated in shared memory by the worker


def test_outside_workers_and_below_the_threshold_arrays_are_plain():
    assert type(batch_array((4, 4), np.uint8)) is np.ndarray
    assert type(batch_array((MIN_SHARED_BYTES,), np.uint8)) is np.ndarray  # no worker here


def test_views_of_a_shared_array_become_views_of_its_tensor(monkeypatch):
    import torchrl_ext.storages.batch_memory as bm

    monkeypatch.setattr(bm, "get_worker_info", lambda: object())
    arr = batch_array((64, 5, 16, 16), np.uint8)
    assert isinstance(arr, SharedArray) and arr.tensor.is_shared()
    arr[...] = np.arange(arr.size, dtype=np.int64).reshape(arr.shape) % 251
    obs, nxt = as_tensor(arr[:, :4], (64, 4, 16, 16)), as_tensor(arr[:, 1:], (64, 4, 16, 16))
    assert obs.untyped_storage().data_ptr() == nxt.untyped_storage().data_ptr() == arr.tensor.data_ptr()
    assert torch.equal(obs, torch.from_numpy(np.ascontiguousarray(arr[:, :4])))
    assert torch.equal(nxt, torch.from_numpy(np.ascontiguousarray(arr[:, 1:])))
    assert torch.equal(as_tensor(arr[7], (5, 256)), torch.from_numpy(arr[7].reshape(5, 256).copy()))


def test_intermediate_reads_make_plain_arrays_even_in_a_worker(monkeypatch):
    import torchrl_ext.storages.batch_memory as bm

    monkeypatch.setattr(bm, "get_worker_info", lambda: object())
    with bm.intermediate():
        inner = batch_array((MIN_SHARED_BYTES,), np.uint8)
    outer = batch_array((MIN_SHARED_BYTES,), np.uint8)
    assert type(inner) is np.ndarray and isinstance(outer, SharedArray)
