"""The ``torchrl_ext:`` prefix of TorchRL's ``load_dataset``, registered without importing TorchRL early.

``import torchrl_ext`` imports neither torch nor TorchRL. So :func:`install`
registers the prefix at once when TorchRL's dataset registry
(``torchrl.data.datasets.utils``) is already imported, and otherwise puts a
finder on ``sys.meta_path`` that registers it right after that module is
first imported. Either way, after ``import torchrl_ext``::

    from torchrl.data.datasets import load_dataset
    rb = load_dataset("torchrl_ext:~/data/pong", batch_size=256, slice_len=32)

returns a :class:`torchrl_ext.datasets.replay.ShardedExperienceReplay`. The
registration names the class as a ``"module:attribute"`` string, which TorchRL
imports on first use.
"""

from __future__ import annotations

import importlib.abc
import sys
from typing import Any

__all__ = ["PREFIX", "FACTORY", "install", "register"]

PREFIX = "torchrl_ext"
FACTORY = "torchrl_ext.datasets.replay:ShardedExperienceReplay"
REGISTRY_MODULE = "torchrl.data.datasets.utils"


def register(module: Any) -> None:
    """Registers :data:`PREFIX` in TorchRL's registry module (replacing an earlier registration)."""
    module.register_dataset(PREFIX, FACTORY, replace=True)


class _RegisterAfter(importlib.abc.Loader):
    """Runs the registry module's own loader, then registers the prefix in it."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.loader.exec_module(module)
        if hasattr(module, "register_dataset"):  # TorchRL < 0.14 has no registry: nothing to do
            register(module)


class _RegistryFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != REGISTRY_MODULE:
            return None
        for finder in sys.meta_path:  # the finder that really serves it
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _RegisterAfter(spec.loader)
                return spec
        return None


def install() -> None:
    """Registers now when TorchRL's registry is loaded, else when it first is (once)."""
    module = sys.modules.get(REGISTRY_MODULE)
    if module is not None and hasattr(module, "register_dataset"):
        register(module)
    elif not any(isinstance(f, _RegistryFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegistryFinder())
