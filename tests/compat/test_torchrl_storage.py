"""Contract: the TorchRL, tensordict and Ray internals the library relies on are still there."""

from __future__ import annotations

import inspect
import os

import pytest
import tensordict
import torchrl
from torchrl.data.replay_buffers import Storage, TensorStorage

from torchrl_ext.compat import ray_cluster, torchrl_storage
from torchrl_ext.format import TD_META_TYPE


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
