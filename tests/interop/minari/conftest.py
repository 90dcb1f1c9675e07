"""Minari datasets written once per test run by the real ``minari`` package, in one Minari datasets directory."""

from __future__ import annotations

import pytest
from interop.minari.minari_maker import DICT_ENV, PIXEL_ENV, make_dataset, register_envs

# dataset id -> (env, data format, jpeg_encoding)
DATASETS = {
    "tests/dict-hdf5-v0": (DICT_ENV, "hdf5", True),
    "tests/dict-arrow-v0": (DICT_ENV, "arrow", True),
    "tests/dict-parquet-v0": (DICT_ENV, "parquet", True),
    "tests/pixels-hdf5-v0": (PIXEL_ENV, "hdf5", True),
    "tests/pixels-arrow-v0": (PIXEL_ENV, "arrow", True),
    "tests/raw-pixels-hdf5-v0": (PIXEL_ENV, "hdf5", False),
}


@pytest.fixture(scope="session")
def minari_root(tmp_path_factory):
    """The Minari datasets directory holding every dataset of :data:`DATASETS` (4 episodes each)."""
    register_envs()
    root = tmp_path_factory.mktemp("minari_datasets")
    for dataset_id, (env_id, data_format, jpeg) in DATASETS.items():
        make_dataset(root, dataset_id, env_id, data_format, jpeg_encoding=jpeg)
    return root
