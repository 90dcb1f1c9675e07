"""A MineStudio-layout dataset and its import, shared by the MineStudio tests (built once for all workers)."""

from __future__ import annotations

import pytest

pytest.importorskip("lmdb")
pytest.importorskip("av")

from helpers import built_once
from interop.minestudio.ms_maker import write_minestudio_dataset

from torchrl_ext.interop.minestudio import import_minestudio


@pytest.fixture(scope="session")
def ms_dataset(tmp_path_factory):
    """``(directory, [(name, episode number, frames), ...])`` of a 3-episode MineStudio dataset, 64x64 frames."""
    def build(directory):
        return directory / "dataset_6xx", write_minestudio_dataset(directory / "dataset_6xx")

    return built_once(tmp_path_factory, "minestudio", build)


@pytest.fixture(scope="session")
def imported(ms_dataset, tmp_path_factory):
    """``(root, ImportStats)`` of the dataset imported with passthrough."""
    def build(directory):
        return directory / "ds", import_minestudio(ms_dataset[0], directory / "ds", progress=False)

    return built_once(tmp_path_factory, "minestudio_imported", build)
