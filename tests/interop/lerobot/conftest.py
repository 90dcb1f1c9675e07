"""The committed LeRobot fixtures (written by the real ``lerobot==0.4.4``) and their imports, shared by the tests."""

from __future__ import annotations

import shutil

import pytest
from interop.lerobot.make_fixtures import FIXTURES

from torchrl_ext.interop.lerobot import import_lerobot


@pytest.fixture(scope="session")
def imported(tmp_path_factory):
    """``{name: (dataset root, ImportStats)}`` of both fixtures imported with the default encodings."""
    out = {}
    for name in ("h264", "av1"):
        root = tmp_path_factory.mktemp(f"lerobot_{name}") / "ds"
        out[name] = (root, import_lerobot(FIXTURES / name, root, progress=False))
    return out


@pytest.fixture
def fixture_copy(tmp_path):
    """A writable copy of a committed fixture: ``fixture_copy("h264")`` -> its directory."""
    def copy(name: str):
        dest = tmp_path / f"src_{name}"
        shutil.copytree(FIXTURES / name, dest)
        return dest
    return copy
