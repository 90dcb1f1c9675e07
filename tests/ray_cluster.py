"""One Ray cluster for every test that needs a running one.

``ray_cluster`` starts a loopback-only local cluster the first time a test
asks for it and shuts it down when the session ends, so the suite starts Ray
at most twice: once here, and once in the single test of the library's own
private cluster (``tests/generate/test_ray.py``, which runs first in the
``ray`` group). Every test that touches Ray is in the xdist group ``ray``
(see ``tests/conftest.py``): one worker runs them all, so two clusters never
start at once. Register with ``pytest_plugins = ["ray_cluster"]``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """The ``ray`` module with a running loopback-only cluster of 2 CPUs (test modules on its PYTHONPATH)."""
    ray = pytest.importorskip("ray")
    from torchrl_ext.compat.ray_cluster import loopback_only, restore

    saved = loopback_only()
    temp = tempfile.mkdtemp(prefix="ray-tests-")
    paths = os.pathsep.join(p for p in sys.path if os.path.isdir(p))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp,
             runtime_env={"env_vars": {"PYTHONPATH": paths}})
    try:
        yield ray
    finally:
        ray.shutdown()
        restore(saved)
