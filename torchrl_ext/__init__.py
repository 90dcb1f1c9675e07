"""torchrl_ext: sharded memmap datasets, storages and event-aware samplers for TorchRL.

The public names below load on first use (PEP 562): ``import torchrl_ext``
alone imports neither torch nor TorchRL, so the command line and the format
tools start at once. ``from torchrl_ext import ShardedStorage`` imports what
that name needs and nothing else.

Example:
    >>> import torchrl_ext
    >>> "ShardedStorage" in dir(torchrl_ext) and "ShardedStorage" in torchrl_ext.__all__
    True
    >>> torchrl_ext.FormatError.__name__
    'FormatError'
"""

from __future__ import annotations

import importlib
from typing import Any

from . import torchrl_registry
from .moved_paths import install_finder

install_finder()  # old module paths (e.g. torchrl_ext.sources.minestudio) still import, with a warning
torchrl_registry.install()  # TorchRL's load_dataset("torchrl_ext:<root>"), without importing TorchRL now

__version__ = "0.1.0"

# Public name -> the subpackage that defines it (relative to this package).
# A new public name is one line here; ``__all__`` follows this table.
_LAZY: dict[str, str] = {
    # format
    "FORMAT_VERSION": ".format",
    "FormatError": ".format",
    "Manifest": ".format",
    "read_manifest": ".format",
    # writing
    "ShardWriter": ".writer",
    "EpisodeTable": ".format",
    "add_episode_metadata": ".preprocessing",
    # reading
    "ShardedStorage": ".storages",
    "EpisodeView": ".storages",
    # events
    "EventIndex": ".events",
    "WindowQuery": ".events",
    "EventSliceSampler": ".samplers",
    "RollingShardSampler": ".samplers",
    "EventWindowDataset": ".events",
    # preprocessing
    "preprocess": ".preprocessing",
    "preprocess_buffer": ".preprocessing",
    # exports
    "to_d3rlpy": ".interop.d3rlpy",
    # remote datasets
    "prefetch": ".export",
    "download_dataset": ".export",
    "push": ".remote",
    # ready-made datasets
    "AtariDQNExperienceReplay": ".interop.atari_dqn",
    "ShardedExperienceReplay": ".datasets",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    """Imports the subpackage that defines ``name`` and caches the value here."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
