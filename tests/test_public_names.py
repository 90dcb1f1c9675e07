"""A public name of a lazily loading package is never shadowed by a submodule of the same name.

Importing ``pkg.name`` sets the attribute ``name`` of ``pkg`` to that module, so a function
exported under a submodule's name would turn into the module once anything imported it.
"""

from __future__ import annotations

import importlib
import pkgutil
import types

import pytest

import torchrl_ext
import torchrl_ext.remote


@pytest.mark.parametrize("package", [torchrl_ext, torchrl_ext.remote], ids=lambda p: p.__name__)
def test_no_public_name_is_a_submodule(package):
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")
    shadowed = [n for n in package.__all__ if isinstance(getattr(package, n), types.ModuleType)]
    assert shadowed == []
    assert callable(torchrl_ext.push) and torchrl_ext.push.__module__ == "torchrl_ext.remote.publish"
