"""A MineStudio-layout dataset and its import, shared by the MineStudio tests."""

from __future__ import annotations

import pytest

pytest.importorskip("lmdb")
pytest.importorskip("av")

from interop.minestudio.ms_maker import write_minestudio_dataset

from torchrl_ext.interop.minestudio import import_minestudio


@pytest.fixture(scope="session")
def ms_dataset(tmp_path_factory):
    """``(directory, [(name, episode number, frames), ...])`` of a 3-episode MineStudio dataset, 64x64 frames."""
    root = tmp_path_factory.mktemp("minestudio") / "dataset_6xx"
    return root, write_minestudio_dataset(root)


@pytest.fixture(scope="session")
def imported(ms_dataset, tmp_path_factory):
    """``(root, ImportStats)`` of the dataset imported with passthrough."""
    root = tmp_path_factory.mktemp("imported") / "ds"
    return root, import_minestudio(ms_dataset[0], root, progress=False)
