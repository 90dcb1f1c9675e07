"""Storages over converted datasets: several runs behind one storage, episode-aware frame stacking;
:func:`loader_context`, how DataLoader workers over any dataset of this package start; and
``ShardedExperienceReplay``, any dataset as a TorchRL dataset buffer (``load_dataset("torchrl_ext:<root>")``).

The Atari DQN Replay Dataset's TorchRL class lives with the rest of its
support in :mod:`torchrl_ext.interop.atari_dqn`.
"""

from ..moved_paths import moved_names
from .frame_stack import FrameStackStorage
from .loader import LoaderContext, loader_context
from .multi_run import MultiRunStorage
from .replay import ShardedExperienceReplay, episode_sampler
from .slice_samplers import NarrowSliceSampler, NarrowSliceSamplerWithoutReplacement

__all__ = ["FrameStackStorage", "LoaderContext", "MultiRunStorage", "NarrowSliceSampler",
           "NarrowSliceSamplerWithoutReplacement", "ShardedExperienceReplay", "episode_sampler", "loader_context"]

# moved to torchrl_ext.interop.atari_dqn (old names still resolve, with a warning)
__getattr__ = moved_names(__name__, dict.fromkeys(
    ("ATARI_GAMES", "AtariDQNExperienceReplay", "prepare_atari_dqn", "resolve_replay_dir"),
    "torchrl_ext.interop.atari_dqn"))
