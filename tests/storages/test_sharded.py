"""ShardedStorage.get for every index kind, checked row by row against the written episodes."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torchrl.data.replay_buffers import Storage

from torchrl_ext import ShardedStorage
from torchrl_ext.synthetic import write_synthetic

from torchrl_ext.testing.synthetic_reference import check_rows, reference_rows

EPISODES, LENGTH = 9, (1, 12)


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    root = write_synthetic(tmp_path_factory.mktemp("ds") / "ds", episodes=EPISODES, length=LENGTH,
                           obs_shape=(2, 3), shard_rows=7)
    return ShardedStorage(root), reference_rows(EPISODES, LENGTH)


def test_is_a_torchrl_storage(ds):
    storage, ref = ds
    assert isinstance(storage, Storage)
    assert len(storage) == len(ref[0]) and storage.num_shards > 5


@pytest.mark.parametrize(
    "index, rows",
    [
        (3, 3),
        (-1, -1),
        (slice(2, 11, 3), np.arange(2, 11, 3)),
        (slice(None, None, -5), None),
        (range(4, 9), np.arange(4, 9)),
        ([0, 20, 5, 5], [0, 20, 5, 5]),
        (np.array([[1, 2], [30, -2]]), np.array([[1, 2], [30, -2]])),
        (torch.tensor([[[6]], [[0]]]), np.array([[[6]], [[0]]])),
    ],
)
def test_index_kinds(ds, index, rows):
    storage, ref = ds
    n = len(storage)
    if rows is None:
        rows = np.arange(n)[index]
    rows = np.asarray(rows) % n
    td = storage[index]
    assert td.batch_size == rows.shape
    check_rows(td, rows, ref)


def test_empty_index(ds):
    storage, _ = ds
    td = storage[[]]
    assert td.batch_size == (0,) and td["observation"].shape == (0, 2, 3)


@pytest.mark.parametrize("index", [10_000, -10_000, [0, 10_000]])
def test_out_of_range_names_valid_range(ds, index):
    storage, _ = ds
    n = len(storage)
    with pytest.raises(IndexError, match=rf"out of range for a storage of {n} rows \(valid: \[-{n}, {n}\)\)"):
        storage[index]


def test_float_index_is_refused(ds):
    with pytest.raises(TypeError, match="index must be integers, got dtype float"):
        ds[0][np.array([0.5])]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_nd_indices_match_reference(ds, data):
    storage, ref = ds
    n = len(storage)
    shape = data.draw(st.lists(st.integers(0, 4), min_size=1, max_size=3))
    flat = data.draw(st.lists(st.integers(-n, n - 1), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
    idx = np.asarray(flat, dtype=np.int64).reshape(shape)
    check_rows(storage[torch.as_tensor(idx)], idx % n, ref)


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(1, 6), min_size=1, max_size=6), shard_rows=st.integers(1, 8), data=st.data())
def test_routing_over_random_shard_sizes(tmp_path_factory, sizes, shard_rows, data):
    root = tmp_path_factory.mktemp("h") / "ds"
    from torchrl_ext import ShardWriter
    from torchrl_ext.synthetic import make_episode

    with ShardWriter.create(root, shard_rows=shard_rows) as w:
        for e, n in enumerate(sizes):
            w.add_episode(make_episode(e, n, (1,), final=e % 2 == 0))
    storage = ShardedStorage(root)
    total = sum(sizes)
    idx = np.asarray(data.draw(st.lists(st.integers(-total, total - 1), max_size=20)), dtype=np.int64)
    td = storage[idx]
    ep = np.repeat(np.arange(len(sizes)), sizes)
    steps = np.concatenate([np.arange(n) for n in sizes])
    np.testing.assert_array_equal(td["episode"].numpy(), ep[idx % total])
    np.testing.assert_array_equal(td["step"].numpy(), steps[idx % total])


def test_set_is_refused_with_how_to_write(ds):
    storage, _ = ds
    with pytest.raises(RuntimeError, match=r"read-only; write episodes with torchrl_ext.ShardWriter.open\(root\)"):
        storage.set(0, storage[0])


def test_pickles_by_path(ds):
    storage, ref = ds
    blob = pickle.dumps(storage)
    assert len(blob) < 4096  # no data travels, only the path
    clone = pickle.loads(blob)
    check_rows(clone[np.arange(len(clone))], np.arange(len(clone)), ref)


def test_state_dict_pins_the_row_count_of_a_growing_dataset(tmp_path):
    root = write_synthetic(tmp_path / "ds", episodes=2, length=3, obs_shape=(1,))
    sd = ShardedStorage(root).state_dict()
    write_synthetic(root, episodes=4, length=3, obs_shape=(1,))  # two more episodes appended
    fresh = ShardedStorage(root)
    assert len(fresh) == 12
    fresh.load_state_dict(sd)
    assert (len(fresh), sd["root"]) == (6, str(root))
    with pytest.raises(ValueError, match="state_dict expects 99 rows"):
        fresh.load_state_dict({**sd, "num_rows": 99})


def test_device_argument_moves_every_tensor(tmp_path):
    root = write_synthetic(tmp_path / "ds", episodes=1, length=3, obs_shape=(1,))
    td = ShardedStorage(root, device="meta")[[0, 1]]
    devices = {v.device.type for v in td.values(include_nested=True, leaves_only=True)}
    assert devices == {"meta"} and td["observation"].shape == (2, 1)


def test_small_column_cache_gives_the_same_rows(ds):
    storage, ref = ds
    uncached = ShardedStorage(storage.root, cache_bytes=0)
    idx = np.random.default_rng(0).integers(0, len(storage), (5, 7))
    assert (uncached[idx] == storage[idx]).all()
    check_rows(uncached[idx], idx, ref)


def test_bad_cache_bytes(ds):
    with pytest.raises(ValueError, match="`cache_bytes` must be an int >= 0, got -1"):
        ShardedStorage(ds[0].root, cache_bytes=-1)


@pytest.mark.slow  # a subprocess with its own open-file limit
def test_many_shards_open_under_a_low_open_file_limit(tmp_path):
    import subprocess
    import sys

    root = write_synthetic(tmp_path / "ds", episodes=100, length=10, obs_shape=(4,), shard_rows=5)
    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n"
        "from torchrl_ext import ShardedStorage\n"
        "s = ShardedStorage(sys.argv[1])\n"
        "print(s.num_shards, s[[0, 999]]['step'].tolist())\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(root)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["200", "[0,", "9]"]
