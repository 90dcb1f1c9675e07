"""Small picklable envs and agents for the generation tests (imported by worker processes)."""

from __future__ import annotations

import os
from pathlib import Path

import gymnasium as gym
import numpy as np


class CountingEnv(gym.Env):
    """obs = [seed, t]; ends after ``3 + seed % 5`` steps; loses a life at step 2; reward +1 at odd t, -1 at t=4."""

    def __init__(self, log: str | None = None, crash_flag: str | None = None, crash_at: tuple[int, int] = (-1, -1),
                 raise_instead: bool = False) -> None:
        self.observation_space = gym.spaces.Box(-1e9, 1e9, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(3)
        self.log, self.crash_flag, self.crash_at, self.raise_instead = log, crash_flag, crash_at, raise_instead
        self.seed_, self.t = 0, 0

    def _obs(self) -> np.ndarray:
        return np.array([self.seed_, self.t], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.seed_, self.t = int(seed), 0
        if self.log:
            with open(self.log, "a") as f:
                f.write(f"{seed}\n")
        return self._obs(), {"lives": 3}

    def step(self, action):
        if (self.seed_, self.t) == tuple(self.crash_at) and self.crash_flag and os.path.exists(self.crash_flag):
            if self.raise_instead:
                raise RuntimeError("env exploded")
            Path(self.crash_flag).unlink()  # crash once
            os._exit(3)
        self.t += 1
        reward = 1.0 if self.t % 2 else (-1.0 if self.t == 4 else 0.0)
        terminated = self.t >= 3 + self.seed_ % 5
        lives = 3 if self.t < 2 else 2
        return self._obs(), reward, terminated, False, {"lives": lives, "t": self.t}


class AlwaysCrashEnv(CountingEnv):
    def step(self, action):
        os._exit(4)


class CounterAgent:
    """Recurrent agent: action = memory % 3, memory counts steps (starts at None)."""

    def act(self, observation, memory):
        memory = 0 if memory is None else memory + 1
        return memory % 3, memory


def make_plain_policy():
    return plain_policy


def plain_policy(observation):
    return int(observation[1]) % 3


def t_events(info, prev_info):
    return [("t_is_2", 2.0)] if info.get("t") == 2 else []


def missing_env():
    """An env factory that fails at construction, like a mistyped Gymnasium id."""
    import ale_py
    import gymnasium

    gymnasium.register_envs(ale_py)
    return gymnasium.make("ALE/NoSuchGame-v5")


class FrameEnv(CountingEnv):
    """CountingEnv with 16x16 RGB frames: red = 16 * t, green = 40 * (seed % 6), blue a fixed gradient."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.observation_space = gym.spaces.Box(0, 255, (16, 16, 3), np.uint8)

    def _obs(self) -> np.ndarray:
        frame = np.empty((16, 16, 3), np.uint8)
        frame[..., 0] = (16 * self.t) % 256
        frame[..., 1] = 40 * (self.seed_ % 6)
        frame[..., 2] = np.arange(16, dtype=np.uint8)[None, :] * 8
        return frame


class ResetFailsEnv(CountingEnv):
    """``reset`` raises for seed 1 (every time: a deterministic error), works for the others; counts its resets."""

    def reset(self, *, seed=None, options=None):
        if self.log:
            with open(self.log, "a") as f:
                f.write(f"{seed}\n")
        if seed == 1:
            raise ValueError("no level for seed 1")
        return super().reset(seed=seed, options=options)


class DictEnv(CountingEnv):
    """CountingEnv with a ``Dict`` observation (an 8x8 RGB frame, a state vector, a ``Tuple`` of a
    Discrete and a Box) and a ``Dict`` action (Discrete ``button``, Box ``stick``): every leaf is a
    function of (seed, t), so a test can rebuild any step."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.observation_space = gym.spaces.Dict({
            "image": gym.spaces.Box(0, 255, (8, 8, 3), np.uint8),
            "state": gym.spaces.Box(-1e9, 1e9, (2,), np.float32),
            "pair": gym.spaces.Tuple((gym.spaces.Discrete(100), gym.spaces.Box(-1e9, 1e9, (3,), np.float64))),
        })
        self.action_space = gym.spaces.Dict({"button": gym.spaces.Discrete(3),
                                             "stick": gym.spaces.Box(-1, 1, (2,), np.float32)})

    def _obs(self):
        return {"image": np.full((8, 8, 3), 10 * self.t + self.seed_, np.uint8),
                "state": np.array([self.seed_, self.t], np.float32),
                "pair": (self.t + 1, np.array([self.seed_, self.t, 0.5], np.float64))}


class TextEnv(CountingEnv):
    """Observations are strings, which a dataset cannot store."""

    def _obs(self):
        return f"step {self.t}"
