"""Old import paths of moved modules and names: they keep working, with a ``DeprecationWarning``.

Support for each foreign project lives in one folder under
:mod:`torchrl_ext.interop`, and the episode table is part of the format; the
paths below are where those modules used to be. This module is a table of
strings and imports nothing of the package, so the layers stay one-directional
(``tests/test_layering.py``): a generic room names a moved public name here
instead of importing it from above.

Example:
    >>> import sys, warnings
    >>> _ = sys.modules.pop("torchrl_ext.events.vpt_actions", None)  # not imported by its old path yet
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     from torchrl_ext.events.vpt_actions import agent_action
    >>> agent_action.__module__
    'torchrl_ext.interop.minestudio.vpt_actions'
    >>> "torchrl_ext.interop.minestudio.vpt_actions" in str(caught[0].message)
    True
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

__all__ = ["MOVED_MODULES", "install_finder", "moved_names"]

# old module (a package moves with its submodules) -> new module
MOVED_MODULES: dict[str, str] = {
    "torchrl_ext.sources.minestudio": "torchrl_ext.interop.minestudio",
    "torchrl_ext.events.minestudio_frames": "torchrl_ext.interop.minestudio.frames",
    "torchrl_ext.events.minestudio_segment": "torchrl_ext.interop.minestudio.segment_items",
    "torchrl_ext.events.minestudio": "torchrl_ext.interop.minestudio.items",
    "torchrl_ext.events.vpt_actions": "torchrl_ext.interop.minestudio.vpt_actions",
    "torchrl_ext.sources.crowdplay": "torchrl_ext.interop.crowdplay",
    "torchrl_ext.testing.crowdplay_maker": "torchrl_ext.interop.crowdplay.maker",
    "torchrl_ext.testing.crowdplay_reference": "torchrl_ext.interop.crowdplay.reference",
    "torchrl_ext.sources.atari_dqn": "torchrl_ext.interop.atari_dqn",
    "torchrl_ext.datasets.atari_dqn": "torchrl_ext.interop.atari_dqn.replay",
    "torchrl_ext.export.d3rlpy": "torchrl_ext.interop.d3rlpy.export",
    "torchrl_ext.writer.episodes": "torchrl_ext.format.episodes",
    "torchrl_ext.storages.filters": "torchrl_ext.format.episode_filters",
    "torchrl_ext.writer.add_metadata": "torchrl_ext.preprocessing.add_metadata",
    "torchrl_ext.sources.gcs_errors": "torchrl_ext.remote.gcs_errors",
    "torchrl_ext.sources.gcs_fetch": "torchrl_ext.remote.gcs_fetch",
    "torchrl_ext.sources.gcs_retry": "torchrl_ext.remote.gcs_retry",
}


def _new_name(old: str) -> str | None:
    for prefix in sorted(MOVED_MODULES, key=len, reverse=True):
        if old == prefix or old.startswith(prefix + "."):
            return MOVED_MODULES[prefix] + old[len(prefix):]
    return None


def _warn(old: str, new: str) -> None:
    warnings.warn(f"`{old}` moved to `{new}`; import it from there (the old path will be removed)",
                  DeprecationWarning, stacklevel=3)


class _Alias(importlib.abc.Loader):
    """Serves the module at its new path under its old name: one module object, never a second copy."""

    def __init__(self, new: str) -> None:
        self.new = new
        self.spec: Any = None

    def create_module(self, spec: Any) -> ModuleType:
        module = importlib.import_module(self.new)
        self.spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self.spec  # the import system stamped the old name's spec on it


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        new = _new_name(fullname)
        if new is None:
            return None
        _warn(fullname, new)
        return importlib.util.spec_from_loader(fullname, _Alias(new))


def install_finder() -> None:
    """Puts the old-path finder first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())


def moved_names(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` serving names that moved to other modules (with a warning)."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        _warn(f"{package}.{name}", f"{module}.{name}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
