"""Fixtures shared by the whole test suite."""

pytest_plugins = ["gcs_server"]
