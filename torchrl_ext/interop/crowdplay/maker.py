"""CrowdPlay-layout datasets made from real ALE frames, with hand-known metadata.

Frames come from ``ALE/SpaceInvaders-v5`` (RGB, frame skip 1 as CrowdPlay
records at 60 fps, no sticky actions) under a seeded random policy, with the
emulator's RAM and lives. ale-py 0.12 has no two-player mode, so the
two-player episode gives both players the frames of one single-player game (in
a two-player game both see one screen) with separate action, reward and
``user_type`` streams (player 1 is an AI policy, ``user_type`` 2).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from torchrl_ext.interop.crowdplay import make_trajectory, write_crowdplay_dir

P0, P1 = "game_0>player_0", "game_0>player_1"


@dataclass(frozen=True)
class Stream:
    frames: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    ram: np.ndarray
    lives: np.ndarray


@lru_cache(maxsize=2)
def ale_stream(steps: int = 420, seed: int = 0, game: str = "ALE/SpaceInvaders-v5") -> Stream:
    """``steps`` consecutive real frames (resetting on game over), their actions, rewards, RAM and lives."""
    import ale_py
    import gymnasium

    gymnasium.register_envs(ale_py)
    env = gymnasium.make(game, obs_type="rgb", frameskip=1, repeat_action_probability=0.0)
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    frames, actions, rewards, ram, lives = [], [], [], [], []
    for _ in range(steps):
        a = int(rng.integers(env.action_space.n))
        frames.append(obs)
        ram.append(env.unwrapped.ale.getRAM().copy())
        lives.append(info["lives"])
        obs, r, term, trunc, info = env.step(a)
        actions.append(a)
        rewards.append(r)
        if term or trunc:
            obs, info = env.reset()
    env.close()
    return Stream(np.stack(frames), np.asarray(actions), np.asarray(rewards), np.stack(ram), np.asarray(lives))


def _agent(s: Stream, a: int, n: int, done: bool, user_type: int | None, seed: int | None = None) -> dict:
    out = {"frames": s.frames[a:a + n], "actions": s.actions[a:a + n], "rewards": s.rewards[a:a + n],
           "dones": np.arange(n) == n - 1 if done else np.zeros(n, bool), "ram": s.ram[a:a + n],
           "lives": s.lives[a:a + n]}
    if seed is not None:  # another player's own actions and rewards over the same screen
        rng = np.random.default_rng(seed)
        out["actions"] = rng.integers(0, 6, n)
        out["rewards"] = np.where(rng.random(n) < 0.1, 10, 0)
    if user_type is not None:
        out["user_type"] = np.full(n, user_type)
    return out


# episode id -> (first frame, length, game end, env keyword data, agent keyword data)
SPECS = {
    "0a1f": (0, 90, True, {"game": "space_invaders", "task": "insideout", "source": "mturk"},
             {"Score": 150, "Active playtime": datetime.timedelta(seconds=55),
              "Correct aliens shot (fraction)": 0.4}),
    "1b2e": (90, 60, False, {"game": "space_invaders", "task": "insideout", "source": "email"},
             {"Score": 260, "Active playtime": datetime.timedelta(seconds=31),
              "Correct aliens shot (fraction)": 1}),
    "2c3d": (150, 75, True, {"game": "space_invaders", "task": "plain", "source": "mturk"},
             {"Score": 90, "Active playtime": datetime.timedelta(seconds=70, microseconds=500000),
              "Correct aliens shot (fraction)": 0.25}),
    "3d4c": (225, 45, False, {"game": "qbert", "task": "plain", "source": "socialmedia"},
             {"Score": 100}),
}
TWO_PLAYER = ("4e5b", 270, 50, {"game": "space_invaders_2p", "task": "competitive", "source": "mturk"},
              {P0: {"Score": 40}, P1: {"Score": 70}})
CREATED = datetime.datetime(2021, 10, 2, 13, 49, 31)


def crowdplay_episodes(two_player: bool = True) -> list[dict]:
    """The episode dicts :func:`write_crowdplay_dir` takes (and the tests read back)."""
    s = ale_stream()
    out = []
    for k, (eid, (a, n, done, env_kw, kw)) in enumerate(SPECS.items()):
        steps = make_trajectory({P0: _agent(s, a, n, done, 1 if k != 1 else None)})
        out.append({"episode_id": eid, "environment_id": f"env{k}", "task_id": f"{env_kw['game']}_{env_kw['task']}",
                    "steps": steps, "env_keyword_data": {"all": env_kw, P0: {"Time played": 60.0 + k}},
                    "keyword_data": {"all": {"created_on": CREATED + datetime.timedelta(days=k)}, P0: kw},
                    "users": {P0: {"user_id": f"u{k}", "permanent_user_id": f"p{k % 2}"}}})
    if two_player:
        eid, a, n, env_kw, kw = TWO_PLAYER
        steps = make_trajectory({P0: _agent(s, a, n, True, 1), P1: _agent(s, a, n, True, 2, seed=7)})
        out.append({"episode_id": eid, "environment_id": "env9", "task_id": "space_invaders_2p_competitive",
                    "steps": steps, "env_keyword_data": {"all": env_kw},
                    "keyword_data": {"all": {"created_on": CREATED}, **kw}})
    return out


def make_crowdplay_dir(path: str | Path, compression: str = "bz2", two_player: bool = True) -> Path:
    return write_crowdplay_dir(path, crowdplay_episodes(two_player), compression=compression)
