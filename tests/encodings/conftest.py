"""Real Atari frames (random actions) shared by the encoding tests."""

from __future__ import annotations

import numpy as np
import pytest


def _ale_frames(obs_type: str, n: int, seed: int = 0) -> np.ndarray:
    gymnasium = pytest.importorskip("gymnasium")
    ale_py = pytest.importorskip("ale_py")
    gymnasium.register_envs(ale_py)
    env = gymnasium.make("ALE/Pong-v5", obs_type=obs_type, frameskip=4, repeat_action_probability=0.0)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    frames = [obs]
    while len(frames) < n:
        obs, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        frames.append(obs)
        if terminated or truncated:
            obs, _ = env.reset()
            frames.append(obs)
    env.close()
    return np.stack(frames[:n])


@pytest.fixture(scope="session")
def rgb_frames() -> np.ndarray:
    """200 Pong frames, uint8 [200, 210, 160, 3]."""
    return _ale_frames("rgb", 200)


@pytest.fixture(scope="session")
def gray_frames() -> np.ndarray:
    """200 Pong frames, uint8 [200, 210, 160]."""
    return _ale_frames("grayscale", 200)


@pytest.fixture(scope="session")
def gray84_frames(gray_frames) -> np.ndarray:
    """The gray frames resized to 84x84 as in DQN preprocessing, uint8 [200, 84, 84]."""
    image = pytest.importorskip("PIL.Image")
    return np.stack([np.asarray(image.fromarray(f).resize((84, 84), image.BILINEAR)) for f in gray_frames])
