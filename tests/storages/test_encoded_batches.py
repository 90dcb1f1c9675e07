"""zstd columns over many shards read in one call per batch: every row equal to the raw dataset's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchrl_ext import FormatError, ShardedStorage
from torchrl_ext.encodings import ChunkIndex, Zstd, chunk_file_paths
from torchrl_ext.synthetic import write_synthetic

ARGS = {"episodes": 9, "length": (3, 20), "obs_shape": (12, 10), "shard_rows": 9}
ENCODINGS = {
    "frames": {"observation": Zstd(chunk_rows=1, dictionary=True)},
    "chunks": {"observation": Zstd(chunk_rows=4)},
}


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    d = tmp_path_factory.mktemp("batches")
    raw = ShardedStorage(write_synthetic(d / "raw", **ARGS))
    enc = {k: ShardedStorage(write_synthetic(d / k, **ARGS, encodings=e), decode_cache_bytes=c)
           for k, e in ENCODINGS.items() for c in (0, 1 << 20) for k in [f"{k}-cache{c}"]}
    return raw, enc


def _equal(a, b) -> None:
    assert set(a.keys(include_nested=True, leaves_only=True)) == set(b.keys(include_nested=True, leaves_only=True))
    for key in a.keys(include_nested=True, leaves_only=True):
        assert torch.equal(a[key], b[key]), key


def test_datasets_span_many_shards_and_episodes(stores):
    raw, enc = stores
    assert raw.num_shards >= 10 and raw.num_episodes == 9
    first, length = raw.episode_bounds
    assert any(5 < e < 30 for e in (first + length).tolist())  # the slice 5:30 below crosses an episode end
    assert all(s.num_shards >= 10 and len(s) == len(raw) for s in enc.values())


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_random_rows_with_repeats_equal_raw(stores, data):
    raw, enc = stores
    rows = np.asarray(data.draw(st.lists(st.integers(0, len(raw) - 1), max_size=50)), np.int64)
    expected = raw[rows]
    for storage in enc.values():
        _equal(storage[rows], expected)


@pytest.mark.parametrize("start, stop", [(0, 9), (5, 30), (40, 41), (60, 90)])
def test_slices_across_shard_and_episode_boundaries_equal_raw(stores, start, stop):
    raw, enc = stores
    stop = min(stop, len(raw))
    for storage in enc.values():
        _equal(storage[start:stop], raw[start:stop])
        two = np.concatenate((np.arange(start, stop), np.arange(start, stop)[::-1]))  # two slices, one reversed
        _equal(storage[two], raw[two])


def test_last_steps_of_every_episode_equal_raw(stores):
    raw, enc = stores
    first, length = raw.episode_bounds
    last = first + length - 1
    for storage in enc.values():
        _equal(storage[last], raw[last])


def test_empty_index_gives_empty_columns(stores):
    _, enc = stores
    for storage in enc.values():
        got = storage[np.zeros(0, np.int64)]
        assert got.batch_size == torch.Size([0]) and got["observation"].shape == (0, 12, 10)


def test_new_shards_are_read_after_refresh(tmp_path):
    raw = write_synthetic(tmp_path / "raw", **ARGS)
    root = write_synthetic(tmp_path / "enc", **ARGS, encodings=ENCODINGS["frames"])
    storage = ShardedStorage(root)
    rows = np.arange(0, len(storage), 7)
    _equal(storage[rows], ShardedStorage(raw)[rows])
    more = dict(ARGS, episodes=12)
    write_synthetic(root, **more)
    write_synthetic(raw, **more)
    assert storage.refresh() > 0
    rows = np.arange(len(storage) - 1, 0, -5)
    _equal(storage[rows], ShardedStorage(raw)[rows])


def test_a_flipped_byte_in_one_shard_of_a_batch_names_that_shard(tmp_path):
    root = write_synthetic(tmp_path / "enc", **ARGS, encodings=ENCODINGS["frames"])
    chunks, index = chunk_file_paths(root / "shards" / "000002", ("observation",))
    offsets = ChunkIndex.from_bytes(index.read_bytes(), "test").offsets
    data = bytearray(chunks.read_bytes())
    data[int(offsets[4]) + 9] ^= 0x40
    chunks.write_bytes(bytes(data))
    storage = ShardedStorage(root)
    first_of_shard = 2 * ARGS["shard_rows"]
    storage[np.arange(0, first_of_shard)]  # the other shards still read
    with pytest.raises(FormatError, match=r"000002/observation\.chunks \(column \('observation',\)\): chunk 4 of"):
        storage[np.array([0, first_of_shard + 4, len(storage) - 1])]
