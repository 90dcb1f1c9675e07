"""Fixtures shared by the whole test suite, and the xdist groups that keep parallel runs apart.

``make test`` runs the suite on two workers with ``--dist loadgroup``: tests
in one ``xdist_group`` run on one worker, in collection order. Tests that use
the GCS emulator share its group; tests that start or use a Ray cluster share
the ``ray`` group (one cluster at a time, see ``tests/ray_cluster.py``).
"""

from __future__ import annotations

import pytest

pytest_plugins = ["gcs_server", "ray_cluster"]

_GROUPS = {"gcs_emulator": "gcs", "ray_cluster": "ray"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # tests on the shared Ray cluster run last, so a test of a private cluster never finds one running
    items.sort(key=lambda item: "ray_cluster" in getattr(item, "fixturenames", ()))
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        group = next((g for f, g in _GROUPS.items() if f in fixtures), None)
        if item.get_closest_marker("ray") is not None:
            group = "ray"
        if group is not None and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group))
