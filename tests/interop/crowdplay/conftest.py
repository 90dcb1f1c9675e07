"""A CrowdPlay-layout dataset from real ALE frames, made and imported once per test run."""

from __future__ import annotations

import pytest
from torchrl_ext.interop.crowdplay.maker import crowdplay_episodes, make_crowdplay_dir

from torchrl_ext.interop.crowdplay import import_crowdplay


@pytest.fixture(scope="session")
def cp_episodes():
    return crowdplay_episodes()


@pytest.fixture(scope="session")
def cp_dir(tmp_path_factory):
    return make_crowdplay_dir(tmp_path_factory.mktemp("crowdplay") / "cp")


@pytest.fixture(scope="session")
def cp_storage(cp_dir, tmp_path_factory):
    return import_crowdplay(cp_dir, tmp_path_factory.mktemp("imported") / "ds", shard_rows=64, progress=False)
