"""Small Minari datasets written by the real ``minari`` package (no jax, offline) from two gymnasium envs.

``DictEnv`` observes a ``Dict`` space holding a ``Tuple`` (a nested Box, a
Discrete, a Tuple of Discrete and Box) and records numeric infos; ``PixelEnv``
observes uint8 frames ``[32, 32, 3]`` (Minari's image spaces, JPEG-encoded when
``jpeg_encoding`` is on). Episodes are played with seeded actions and stored
with ``minari.create_dataset_from_buffers`` and ``EpisodeBuffer``s, as a user
without Minari's ``DataCollector`` (which needs jax) would.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

DICT_ENV = "TorchrlExtMinariDict-v0"
PIXEL_ENV = "TorchrlExtMinariPixels-v0"
MAX_STEPS = 12


class DictEnv(gym.Env):
    """A point that drifts with the action; terminates when it leaves [-1.5, 1.5], the TimeLimit truncates."""

    observation_space = spaces.Dict({
        "pos": spaces.Box(-10.0, 10.0, (3,), np.float32),
        "mode": spaces.Discrete(4),
        "pair": spaces.Tuple((spaces.Discrete(3), spaces.Box(0.0, 1.0, (2,), np.float64))),
    })
    action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)

    def _obs(self) -> dict[str, Any]:
        return {"pos": self.pos.copy(), "mode": int(self.t % 4),
                "pair": (int(self.t % 3), np.array([self.t / 20, 1 - self.t / 20]))}

    def _info(self) -> dict[str, Any]:
        return {"dist": np.array([float(np.abs(self.pos).sum())]), "counts": np.array([self.t, 2 * self.t])}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        self.pos = self.np_random.uniform(-1, 1, 3).astype(np.float32)
        return self._obs(), self._info()

    def step(self, action):
        self.t += 1
        self.pos = (self.pos + np.array([action[0], action[1], 0.1], np.float32) * 0.5).astype(np.float32)
        terminated = bool(np.abs(self.pos).max() > 1.5)
        return self._obs(), float(-np.abs(self.pos).sum()), terminated, False, self._info()


class PixelEnv(gym.Env):
    """Frames of a bar that moves with the action (smooth, so JPEG keeps them close); ends after 9 steps."""

    observation_space = spaces.Box(0, 255, (32, 32, 3), np.uint8)
    action_space = spaces.Discrete(3)

    def _frame(self) -> np.ndarray:
        y, x = np.mgrid[0:32, 0:32]
        frame = np.stack([(x * 8 + self.x * 10) % 256, (y * 8) % 256, np.full_like(x, 40 * self.t % 256)], -1)
        return frame.astype(np.uint8)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t, self.x = 0, int(self.np_random.integers(0, 10))
        return self._frame(), {}

    def step(self, action):
        self.t += 1
        self.x += int(action) - 1
        return self._frame(), float(action == 2), self.t >= 9, False, {}


def register_envs() -> None:
    """Registers both envs (string entry points, so Minari records their EnvSpec)."""
    if DICT_ENV not in gym.registry:
        gym.register(DICT_ENV, entry_point="interop.minari.minari_maker:DictEnv", max_episode_steps=MAX_STEPS)
    if PIXEL_ENV not in gym.registry:
        gym.register(PIXEL_ENV, entry_point="interop.minari.minari_maker:PixelEnv", max_episode_steps=MAX_STEPS)


def _stack(values: Sequence[Any]) -> Any:
    """Per-step values -> Minari's layout: dicts of stacked leaves, tuples of stacked items, arrays."""
    first = values[0]
    if isinstance(first, dict):
        return {k: _stack([v[k] for v in values]) for k in first}
    if isinstance(first, tuple):
        return tuple(_stack([v[i] for v in values]) for i in range(len(first)))
    return np.stack([np.asarray(v) for v in values])


def play(env_id: str, episodes: int, seed: int = 0) -> list[Any]:
    """``episodes`` episodes of ``env_id`` as Minari ``EpisodeBuffer``s (seeds ``seed``, ``seed + 1``...)."""
    from minari.data_collector import EpisodeBuffer

    register_envs()
    env = gym.make(env_id)
    env.action_space.seed(seed)
    out = []
    for e in range(episodes):
        obs, info = env.reset(seed=seed + e)
        observations, infos, actions, rewards, terms, truncs = [obs], [info], [], [], [], []
        done = False
        while not done:
            action = env.action_space.sample()
            obs, reward, terminated, truncated, info = env.step(action)
            observations.append(obs)
            infos.append(info)
            actions.append(action)
            rewards.append(reward)
            terms.append(terminated)
            truncs.append(truncated)
            done = terminated or truncated
        out.append(EpisodeBuffer(seed=seed + e, observations=_stack(observations), actions=_stack(actions),
                                 rewards=rewards, terminations=terms, truncations=truncs,
                                 infos=_stack(infos) if infos[0] else None))
    env.close()
    return out


@contextmanager
def datasets_path(path: str | os.PathLike) -> Iterator[None]:
    """``MINARI_DATASETS_PATH`` set to ``path`` for the block (Minari finds datasets there)."""
    before = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = before


def make_dataset(root: Path, dataset_id: str, env_id: str, data_format: str, episodes: int = 4, *,
                 jpeg_encoding: bool = True, seed: int = 0) -> Path:
    """Writes ``dataset_id`` under the Minari datasets directory ``root``; returns its ``data/`` directory."""
    import minari

    buffers = play(env_id, episodes, seed)
    with datasets_path(root), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(
            dataset_id, buffers, env=env_id, algorithm_name="random", author="torchrl-ext tests",
            author_email="tests@example.org", code_permalink="https://example.org/minari_maker.py",
            description="tiny fixture", data_format=data_format, jpeg_encoding=jpeg_encoding)
    return root / dataset_id / "data"


def minari_episodes(root: Path, dataset_id: str) -> tuple[list[Any], list[dict[str, Any]]]:
    """Minari's own reading of ``dataset_id``: its episodes and its per-episode metadata."""
    import minari

    with datasets_path(root):
        dataset = minari.load_dataset(dataset_id)
        episodes = list(dataset.iterate_episodes())
        meta = list(dataset.storage.get_episode_metadata(range(dataset.total_episodes)))
    return episodes, meta
