"""A CrowdPlay-layout dataset from real ALE frames, made and imported once per test run (once for all workers)."""

from __future__ import annotations

import pytest
from helpers import built_once
from torchrl_ext.interop.crowdplay.maker import crowdplay_episodes, make_crowdplay_dir

from torchrl_ext.interop.crowdplay import import_crowdplay


@pytest.fixture(scope="session")
def cp_episodes():
    return crowdplay_episodes()


@pytest.fixture(scope="session")
def cp_dir(tmp_path_factory):
    return built_once(tmp_path_factory, "crowdplay", lambda d: make_crowdplay_dir(d / "cp"))


@pytest.fixture(scope="session")
def cp_storage(cp_dir, tmp_path_factory):
    return built_once(tmp_path_factory, "crowdplay_imported",
                      lambda d: import_crowdplay(cp_dir, d / "ds", shard_rows=64, progress=False))
