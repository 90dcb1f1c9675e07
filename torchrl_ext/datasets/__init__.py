"""Storages over converted datasets: several runs behind one storage, episode-aware frame stacking.

The Atari DQN Replay Dataset's TorchRL class lives with the rest of its
support in :mod:`torchrl_ext.interop.atari_dqn`.
"""

from ..moved_paths import moved_names
from .frame_stack import FrameStackStorage
from .multi_run import MultiRunStorage

__all__ = ["FrameStackStorage", "MultiRunStorage"]

# moved to torchrl_ext.interop.atari_dqn (old names still resolve, with a warning)
__getattr__ = moved_names(__name__, dict.fromkeys(
    ("ATARI_GAMES", "AtariDQNExperienceReplay", "prepare_atari_dqn", "resolve_replay_dir"),
    "torchrl_ext.interop.atari_dqn"))
