"""Parallel episode generation straight into sharded datasets.

``generate(env_fn, policy_fn, root, num_episodes=..., num_workers=...)`` plays
episodes in local worker processes (default) or Ray actors
(``executor="ray"``, ``pip install torchrl-ext[ray]``); the calling process
writes them in episode order. ``make_atari_env`` builds 84x84 grayscale Atari
envs from the ROMs bundled with ale-py.
"""

from .api import EXECUTORS, GenerateStats, generate
from .atari import AtariPreprocess, make_atari_env
from .events import step_events
from .rollout import RandomPolicy, rollout
from .workers import WorkerFailed

__all__ = [
    "generate",
    "GenerateStats",
    "EXECUTORS",
    "WorkerFailed",
    "RandomPolicy",
    "rollout",
    "step_events",
    "make_atari_env",
    "AtariPreprocess",
]
