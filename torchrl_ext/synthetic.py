"""Deterministic synthetic episodes for demos, tests and benchmarks.

Every value is a function of (episode, step), so a reader can check any row
without keeping the episodes: see :func:`expected_row`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from tensordict import TensorDict

from .validation import user_path
from .writer import ShardWriter

__all__ = ["make_episode", "episode_length", "write_synthetic", "obs_value"]


def obs_value(episode: int | np.ndarray, step: int | np.ndarray) -> np.ndarray:
    """The uint8 value that fills the observation of ``(episode, step)``."""
    return ((np.asarray(episode) * 37 + np.asarray(step) * 3 + 1) % 251).astype(np.uint8)


def episode_length(episode: int, length: int | tuple[int, int]) -> int:
    """Length of synthetic episode ``episode`` (fixed, or drawn in ``[lo, hi]``)."""
    if isinstance(length, int):
        return length
    lo, hi = length
    return lo + (episode * 7919) % (hi - lo + 1)


def make_episode(
    episode: int,
    length: int,
    obs_shape: tuple[int, ...] = (84, 84),
    *,
    final: bool = True,
    truncated: bool = False,
) -> TensorDict:
    """One TED-layout episode whose values encode ``(episode, step)``.

    ``observation[t]`` is filled with :func:`obs_value`; ``action[t] = (e + t) % 6``
    (int64); ``("next", "reward")[t] = e + t / 1000`` (float32, shape [1]);
    ``done`` is set at the last step (as ``terminated`` unless ``truncated``).
    With ``final=True`` the episode provides ``("next", "observation")``, whose
    last value is filled with ``obs_value(e, length)``.
    """
    steps = np.arange(length + 1)
    frames = np.empty((length + 1, *obs_shape), dtype=np.uint8)
    frames[...] = obs_value(episode, steps).reshape(-1, *([1] * len(obs_shape)))
    done = np.zeros((length, 1), dtype=bool)
    done[-1] = True
    data = {
        "observation": torch.from_numpy(frames[:-1]),
        "action": torch.from_numpy((episode + steps[:-1]) % 6),
        "next": {
            "reward": torch.from_numpy((episode + steps[:-1] / 1000.0).astype(np.float32)[:, None]),
            "done": torch.from_numpy(done),
            "terminated": torch.from_numpy(done & (not truncated)),
            "truncated": torch.from_numpy(done & truncated),
        },
    }
    if final:
        data["next"]["observation"] = torch.from_numpy(frames[1:])
    return TensorDict(data, batch_size=[length])


def write_synthetic(
    root: str | os.PathLike,
    *,
    episodes: int = 10,
    length: int | tuple[int, int] = 50,
    obs_shape: tuple[int, ...] = (84, 84),
    shard_rows: int | None = None,
    first_episode: int = 0,
    events_every: int = 0,
    encodings: dict | None = None,
) -> Path:
    """Writes (or, if ``root`` exists, resumes) a synthetic dataset; returns ``root``.

    Episodes with an odd id provide no final observation (their last next
    observation reads as zeros). With ``events_every=k`` each episode gets an
    event ``"tick:<step % 3>"`` at every ``k``-th step and ``"episode_end"`` at
    its last one. ``encodings`` is passed to :meth:`ShardWriter.create`.
    """
    root = user_path(root, "root")
    writer = ShardWriter.open(root) if (root / "dataset.json").exists() else ShardWriter.create(
        root, shard_rows=shard_rows, source={"kind": "synthetic", "obs_shape": list(obs_shape)},
        encodings=encodings,
    )
    with writer:
        for e in range(max(first_episode, writer.num_episodes), episodes):
            n = episode_length(e, length)
            events = None
            if events_every:
                events = [(t, f"tick:{t % 3}", float(t)) for t in range(0, n, events_every)]
                events.append((n - 1, "episode_end", 1.0))
            writer.add_episode(
                make_episode(e, n, obs_shape, final=e % 2 == 0),
                metadata={"game": ["pong", "breakout"][e % 2], "score": float(e % 5)},
                events=events,
            )
    return root
