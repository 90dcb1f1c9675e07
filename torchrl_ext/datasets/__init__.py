"""Ready-made TorchRL replay buffers over converted datasets."""

from .atari_dqn import (
    ATARI_GAMES,
    AtariDQNExperienceReplay,
    prepare_atari_dqn,
    resolve_replay_dir,
)
from .frame_stack import FrameStackStorage
from .multi_run import MultiRunStorage

__all__ = [
    "ATARI_GAMES",
    "AtariDQNExperienceReplay",
    "FrameStackStorage",
    "MultiRunStorage",
    "prepare_atari_dqn",
    "resolve_replay_dir",
]
