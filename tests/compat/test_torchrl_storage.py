"""Contract: the TorchRL, tensordict and Ray internals the library relies on are still there."""

from __future__ import annotations

import inspect
import os
import warnings

import pytest
import tensordict
import torchrl
from torchrl.data import TensorDictReplayBuffer
from torchrl.data.replay_buffers import SliceSampler, Storage, TensorStorage

from torchrl_ext.compat import ray_cluster, torchrl_storage
from torchrl_ext.format import TD_META_TYPE
from torchrl_ext.storages import ShardedStorage
from torchrl_ext.synthetic import write_synthetic


@pytest.mark.parametrize("name", torchrl_storage.PRIVATE_NAMES)
def test_tensor_storage_still_has_the_private_member(name):
    assert hasattr(TensorStorage, name) or hasattr(Storage, name), (
        f"torchrl {torchrl.__version__} no longer defines TensorStorage.{name}; update "
        "torchrl_ext/compat/torchrl_storage.py for this TorchRL release"
    )


def test_max_size_along_dim0_signature_is_unchanged():
    params = inspect.signature(TensorStorage._max_size_along_dim0).parameters
    assert {"single_data", "batched_data"} <= set(params), (
        f"torchrl {torchrl.__version__} changed TensorStorage._max_size_along_dim0{tuple(params)}; "
        "update torchrl_ext/compat/torchrl_storage.py"
    )


def test_tensordict_meta_type_matches_the_installed_class():
    assert str(tensordict.TensorDict) == TD_META_TYPE, (
        f"tensordict {tensordict.__version__} records {tensordict.TensorDict} in meta.json, "
        f"the format writes {TD_META_TYPE}; update TD_META_TYPE in torchrl_ext/format/columns.py"
    )


def test_ray_cluster_switch_is_where_it_was():
    pytest.importorskip("ray")
    import ray._private.ray_constants as constants

    assert hasattr(constants, "ENABLE_RAY_CLUSTER"), (
        "ray no longer has ray._private.ray_constants.ENABLE_RAY_CLUSTER; update "
        "torchrl_ext/compat/ray_cluster.py"
    )
    saved = ray_cluster.loopback_only()
    try:
        assert (os.environ[ray_cluster.CLUSTER_VAR], constants.ENABLE_RAY_CLUSTER) == ("0", False)
    finally:
        ray_cluster.restore(saved)
    assert os.environ.get(ray_cluster.CLUSTER_VAR) == saved[0]


SCAN_WARNING = r"reads all 60 rows of ShardedStorage .* pass SliceSampler\(trajectories=storage\.episodes"


@pytest.fixture(scope="module")
def slice_storage(tmp_path_factory):
    return ShardedStorage(write_synthetic(tmp_path_factory.mktemp("scan") / "ds", episodes=3, length=20,
                                          obs_shape=(2,), shard_rows=25))


def slice_buffer(storage, **kwargs):
    return TensorDictReplayBuffer(storage=storage, sampler=SliceSampler(slice_len=4, **kwargs), batch_size=8)


@pytest.mark.parametrize("name", torchrl_storage.SLICE_SCAN_NAMES)
def test_slice_sampler_still_has_the_scanning_method(name):
    assert "storage[:]" in inspect.getsource(getattr(SliceSampler, name)), (
        f"torchrl {torchrl.__version__} no longer reads storage[:] in SliceSampler.{name}; update "
        "SLICE_SCAN_NAMES in torchrl_ext/compat/torchrl_storage.py"
    )


@pytest.mark.parametrize("kwargs", [{"traj_key": "episode"}, {"end_key": ("next", "done")}, {}])
def test_slice_sampler_scan_warns_once_and_samples_whole_slices(slice_storage, kwargs):
    rb = slice_buffer(slice_storage, **kwargs)
    with pytest.warns(UserWarning, match=SCAN_WARNING):
        first = rb.sample().reshape(2, 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rb.sample()
    assert [str(w.message) for w in caught if "trajectories=" in str(w.message)] == []
    assert (first["episode"] == first["episode"][:, :1]).all()
    assert first["step"][:, 1:].sub(first["step"][:, :-1]).eq(1).all()


def test_slice_sampler_given_trajectories_and_plain_reads_do_not_warn(slice_storage):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch = slice_buffer(slice_storage, trajectories=slice_storage.episodes, cache_values=True).sample()
        whole = slice_storage[:]
    assert [str(w.message) for w in caught if "trajectories=" in str(w.message)] == []
    assert whole["episode"].tolist() == [0] * 20 + [1] * 20 + [2] * 20
    assert batch["episode"].reshape(2, 4).eq(batch["episode"].reshape(2, 4)[:, :1]).all()
