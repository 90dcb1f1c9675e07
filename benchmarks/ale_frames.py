"""Real Atari frames for the encoding benchmark, collected once and cached as ``.npy`` files.

Gray frames: ``torchrl_ext.generate.make_atari_env`` (84x84, frame skip 4 with a
max over the last two emulator frames, sticky actions 0.25, up to 30 no-ops,
Pillow's box filter, the counterpart of OpenCV's ``INTER_AREA``), i.e. the
frames of a DQN replay. RGB frames: ``ALE/<Game>-v5`` with ``obs_type="rgb"``
and ``frameskip=4``, box-resized to ``size x size``. A uniformly random policy
plays whole episodes (cut at ``max_steps``).

Each game is cached under ``<cache>/<kind>-<game>-<size>-<frames>/`` as
``obs.npy`` (every step's frame), ``final.npy`` (each episode's frame after its
last step), ``ep_len.npy``, ``action.npy``, ``reward.npy`` and
``terminated.npy`` (per episode: ended by the game, not by ``max_steps``).
:func:`write_dataset` writes them as episodes with ``ShardWriter``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FILES = ("obs", "final", "ep_len", "action", "reward", "terminated")


@dataclass
class Frames:
    """The episodes of one game, concatenated."""

    game: str
    obs: np.ndarray  # uint8 [N, H, W] or [N, H, W, 3]
    final: np.ndarray  # uint8 [E, ...]: the frame after each episode's last step
    ep_len: np.ndarray  # int64 [E]
    action: np.ndarray  # int64 [N]
    reward: np.ndarray  # float32 [N]
    terminated: np.ndarray  # bool [E]

    @property
    def ep_first(self) -> np.ndarray:
        return np.concatenate(([0], np.cumsum(self.ep_len)[:-1])).astype(np.int64)

    def episodes(self):
        """Yields ``(obs, next_obs, action, reward, terminated)`` per episode."""
        for e, (a, n) in enumerate(zip(self.ep_first.tolist(), self.ep_len.tolist())):
            obs = self.obs[a:a + n]
            nxt = np.concatenate((obs[1:], self.final[e:e + 1]))
            yield obs, nxt, self.action[a:a + n], self.reward[a:a + n], bool(self.terminated[e])


def _resize(frame: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize((size, size), Image.BOX), dtype=np.uint8)


def _make_env(game: str, rgb: bool, size: int):
    if not rgb:
        from torchrl_ext.generate import make_atari_env

        return make_atari_env(f"ALE/{game}-v5", screen_size=size)
    import ale_py
    import gymnasium

    gymnasium.register_envs(ale_py)
    return gymnasium.make(f"ALE/{game}-v5", obs_type="rgb", frameskip=4)


def collect(game: str, frames: int, *, rgb: bool = False, size: int = 84, seed: int = 0,
            max_steps: int = 27_000) -> Frames:
    """Plays whole episodes of ``game`` with a random policy until at least ``frames`` steps."""
    env = _make_env(game, rgb, size)
    resize = (lambda f: _resize(f, size)) if rgb else (lambda f: f)
    obs_l, final_l, lens, acts, rews, terms = [], [], [], [], [], []
    total, ep = 0, 0
    try:
        while total < frames:
            obs, _ = env.reset(seed=seed * 100_000 + ep)
            env.action_space.seed(seed * 100_000 + ep)
            frame = resize(obs)
            steps, term = 0, False
            while True:
                a = int(env.action_space.sample())
                obs, r, term, trunc, _ = env.step(a)
                obs_l.append(frame)
                acts.append(a)
                rews.append(r)
                frame = resize(obs)
                steps += 1
                if term or trunc or steps >= max_steps:
                    break
            final_l.append(frame)
            lens.append(steps)
            terms.append(bool(term))
            total += steps
            ep += 1
    finally:
        env.close()
    return Frames(game, np.stack(obs_l), np.stack(final_l), np.asarray(lens, np.int64),
                  np.asarray(acts, np.int64), np.asarray(rews, np.float32), np.asarray(terms, bool))


def load_or_collect(cache: str | os.PathLike, game: str, frames: int, *, rgb: bool = False,
                    size: int = 84, seed: int = 0) -> Frames:
    """The cached frames of ``game`` if present, else collects and caches them."""
    d = Path(cache) / f"{'rgb' if rgb else 'gray'}-{game}-{size}-{frames}"
    if all((d / f"{f}.npy").exists() for f in FILES):
        return Frames(game, *(np.load(d / f"{f}.npy") for f in FILES))
    out = collect(game, frames, rgb=rgb, size=size, seed=seed)
    tmp = d.with_name(d.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for f in FILES:
        np.save(tmp / f"{f}.npy", getattr(out, f))
    tmp.rename(d)
    return out


def write_dataset(root: str | os.PathLike, games: list[Frames], shard_rows: int,
                  encodings: dict | None = None, *, event=None, metadata=None, **create) -> None:
    """Writes every episode of ``games`` with ``ShardWriter`` in TorchRL's TED layout
    (``("next", "observation")`` given in full; the writer keeps only the final one),
    with one event at each step whose reward is non-zero: ``event(game, reward)`` names it
    (default ``"reward"``); ``metadata(game, rewards)`` gives each episode's metadata (default
    ``{"game": game}``); ``create`` goes to ``ShardWriter.create``."""
    import torch
    from tensordict import TensorDict

    from torchrl_ext import ShardWriter

    event = event or (lambda game, r: "reward")
    metadata = metadata or (lambda game, rewards: {"game": game})
    with ShardWriter.create(root, shard_rows=shard_rows, encodings=encodings, **create) as w:
        for f in games:
            for obs, nxt, action, reward, terminated in f.episodes():
                t = len(obs)
                done = np.zeros((t, 1), bool)
                done[-1] = True
                td = TensorDict({
                    "observation": torch.from_numpy(obs), "action": torch.from_numpy(action),
                    "next": {"observation": torch.from_numpy(nxt), "reward": torch.from_numpy(reward)[:, None],
                             "done": torch.from_numpy(done), "terminated": torch.from_numpy(done & terminated),
                             "truncated": torch.from_numpy(done & (not terminated))},
                }, [t])
                events = [(int(s), event(f.game, float(reward[s])), float(reward[s])) for s in np.flatnonzero(reward)]
                w.add_episode(td, events=events, metadata=metadata(f.game, reward))
