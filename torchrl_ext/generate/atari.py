"""Atari environments with Dopamine-style preprocessing (84x84 grayscale).

The ROMs ship inside the ``ale-py`` wheel, so no download is needed. The base
environment is made with ``frameskip=1``, grayscale screens and sticky actions
(``repeat_action_probability=0.25``, as in Dopamine and Gymnasium's ``v5``).
:class:`AtariPreprocess` then does what Gymnasium's ``AtariPreprocessing``
does, without its OpenCV dependency: up to ``noop_max`` no-ops after reset,
each action repeated ``frame_skip`` times with the reward summed, a max over
the last two frames, and an area resize to ``screen_size`` (Pillow's box
filter, the counterpart of OpenCV's ``INTER_AREA``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["AtariPreprocess", "make_atari_env"]

try:  # gymnasium is optional; the wrapper needs it, the rest of the package does not
    import gymnasium as gym
except ImportError:  # pragma: no cover
    gym = None

_HINT = "Atari environments need ale-py, gymnasium and pillow; pip install torchrl-ext[atari]"


class AtariPreprocess(gym.Wrapper if gym is not None else object):
    """No-op starts, frame skip with max-pooling, grayscale area resize.

    Args:
        env: an ALE env made with ``frameskip=1`` and ``obs_type="grayscale"``.
        frame_skip: emulator frames per agent step.
        screen_size: side of the square ``uint8`` observation.
        noop_max: at most this many no-op steps after reset (0 disables).
    """

    def __init__(self, env, frame_skip: int = 4, screen_size: int = 84, noop_max: int = 30) -> None:
        from PIL import Image

        super().__init__(env)
        if not isinstance(frame_skip, int) or frame_skip < 1:
            raise ValueError(f"`frame_skip` must be a positive int, got {frame_skip!r}")
        if not isinstance(screen_size, int) or screen_size < 1:
            raise ValueError(f"`screen_size` must be a positive int, got {screen_size!r}")
        shape = env.observation_space.shape
        if len(shape) != 2:
            raise ValueError(f"expected a grayscale ALE env (obs_type='grayscale'), got observations of shape {shape}")
        self._image = Image
        self.frame_skip, self.screen_size, self.noop_max = frame_skip, screen_size, noop_max
        self._frames = np.zeros((2, *shape), dtype=np.uint8)
        self.observation_space = gym.spaces.Box(0, 255, (screen_size, screen_size), np.uint8)

    def _resize(self, frame: np.ndarray) -> np.ndarray:
        img = self._image.fromarray(frame).resize((self.screen_size, self.screen_size), self._image.BOX)
        return np.asarray(img, dtype=np.uint8)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        noops = int(self.unwrapped.np_random.integers(1, self.noop_max + 1)) if self.noop_max > 0 else 0
        for _ in range(noops):
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset()
        return self._resize(obs), info

    def step(self, action):
        total, terminated, truncated, info = 0.0, False, False, {}
        self._frames[0] = 0
        for t in range(self.frame_skip):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if t >= self.frame_skip - 2:
                self._frames[t - (self.frame_skip - 2)] = obs
            if terminated or truncated:
                self._frames[1] = obs
                break
        frame = self._frames[1] if self.frame_skip == 1 else self._frames.max(axis=0)
        return self._resize(frame), total, terminated, truncated, info


def make_atari_env(
    env_id: str = "ALE/Pong-v5",
    *,
    frame_skip: int = 4,
    screen_size: int = 84,
    noop_max: int = 30,
    sticky: float = 0.25,
    **kwargs: Any,
):
    """Makes a preprocessed Atari env; picklable through ``functools.partial``.

    Args:
        env_id: Gymnasium id, e.g. ``"ALE/Pong-v5"``.
        frame_skip: frames per agent step (done by the wrapper, not the emulator).
        screen_size: side of the square grayscale observation.
        noop_max: at most this many no-op steps after reset (0 disables).
        sticky: probability that the emulator repeats the previous action.
        **kwargs: passed to ``gymnasium.make``.

    Example:
        >>> env = make_atari_env("ALE/Pong-v5")
        >>> obs, info = env.reset(seed=0)
        >>> obs.shape, obs.dtype.name, info["lives"]
        ((84, 84), 'uint8', 0)
        >>> env.close()
    """
    try:
        import ale_py
        import PIL  # noqa: F401
    except ImportError as err:
        raise ImportError(_HINT) from err
    if gym is None:
        raise ImportError(_HINT)
    gym.register_envs(ale_py)
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no version banner inside progress bars
    env = gym.make(env_id, frameskip=1, repeat_action_probability=sticky, obs_type="grayscale", **kwargs)
    return AtariPreprocess(env, frame_skip=frame_skip, screen_size=screen_size, noop_max=noop_max)
