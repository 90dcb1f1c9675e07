"""Ready-made TorchRL replay buffers over converted datasets."""

from .atari_dqn import (
    ATARI_GAMES,
    AtariDQNExperienceReplay,
    prepare_atari_dqn,
    resolve_replay_dir,
)
from .frame_stack import FrameStackStorage

__all__ = [
    "ATARI_GAMES",
    "AtariDQNExperienceReplay",
    "FrameStackStorage",
    "prepare_atari_dqn",
    "resolve_replay_dir",
]
