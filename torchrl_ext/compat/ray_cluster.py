"""Ray internals touched when starting a private, loopback-only local cluster.

Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` once, when it is first
imported (``torchrl.data`` imports it early), into
``ray._private.ray_constants.ENABLE_RAY_CLUSTER``, and binds its servers to the
machine's routable address unless it is false. A private cluster's own
processes read the variable afresh; this process's copy is set too.
:func:`loopback_only` does both and returns what :func:`restore` puts back.
"""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["PRIVATE_NAMES", "CLUSTER_VAR", "loopback_only", "restore"]

CLUSTER_VAR = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_CONSTANTS = "ray._private.ray_constants"
PRIVATE_NAMES = (f"{_CONSTANTS}.ENABLE_RAY_CLUSTER",)


def loopback_only() -> tuple[str | None, Any]:
    """Makes a cluster started from this process listen on loopback only; returns the old settings."""
    constants = sys.modules.get(_CONSTANTS)
    saved = (os.environ.get(CLUSTER_VAR), getattr(constants, "ENABLE_RAY_CLUSTER", None))
    os.environ[CLUSTER_VAR] = "0"
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False
    return saved


def restore(saved: tuple[str | None, Any]) -> None:
    """Puts back what :func:`loopback_only` changed."""
    env, constant = saved
    if env is None:
        os.environ.pop(CLUSTER_VAR, None)
    else:
        os.environ[CLUSTER_VAR] = env
    constants = sys.modules.get(_CONSTANTS)
    if constants is not None and constant is not None:
        constants.ENABLE_RAY_CLUSTER = constant
