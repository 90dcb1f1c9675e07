"""generate() on real ALE Pong: the dataset holds exactly what the emulator produced."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from helpers import built_once, read_events

from torchrl_ext import ShardedStorage
from torchrl_ext.cli import main
from torchrl_ext.generate import generate, make_atari_env

PONG = functools.partial(make_atari_env, "ALE/Pong-v5")
STEPS = 150


def _direct(seed: int, max_steps: int) -> dict[str, np.ndarray]:
    """Plain loop: reset with the seed, random actions from the seeded action space."""
    env = PONG()
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    frames, actions, rewards = [obs], [], []
    for _ in range(max_steps):
        action = env.action_space.sample()
        obs, reward, terminated, truncated, _ = env.step(action)
        frames.append(obs)
        actions.append(action)
        rewards.append(reward)
        if terminated or truncated:
            break
    env.close()
    return {"frames": np.stack(frames), "actions": np.asarray(actions), "rewards": np.asarray(rewards)}


@pytest.fixture(scope="module")
def pong(tmp_path_factory):
    def build(directory):
        generate(PONG, None, directory / "ds", num_episodes=2, num_workers=2, max_steps=STEPS, seed=3,
                 progress=False)
        return ShardedStorage(directory / "ds")

    return built_once(tmp_path_factory, "generate_pong", build)


@pytest.mark.slow
@pytest.mark.parametrize("episode", [0, 1])
def test_frames_actions_rewards_match_emulator(pong, episode):
    ref = _direct(3 + episode, STEPS)
    first, length = pong.episode_bounds
    td = pong[np.arange(first[episode], first[episode] + length[episode])]
    assert ref["rewards"].any()  # the window holds at least one point
    np.testing.assert_array_equal(td["observation"].numpy(), ref["frames"][:-1])
    np.testing.assert_array_equal(td["next", "observation"].numpy(), ref["frames"][1:])
    np.testing.assert_array_equal(td["action"].numpy(), ref["actions"])
    np.testing.assert_array_equal(td["next", "reward"].numpy()[:, 0], ref["rewards"])


def test_pong_layout_and_truncation(pong):
    td = pong[np.arange(len(pong))]
    assert td["observation"].shape == (2 * STEPS, 84, 84) and td["observation"].dtype.is_floating_point is False
    assert td["next", "truncated"].sum().item() == 2 and td["next", "terminated"].sum().item() == 0
    meta = pong.episode_table().row(1)
    assert (meta["env_id"], meta["seed"], meta["length"]) == ("ALE/Pong-v5", 4, STEPS)


def test_reward_events_match_rewards(pong):
    td = pong[np.arange(len(pong))]
    reward = td["next", "reward"].numpy()[:, 0]
    rows = [row for _, _, row, name, _ in read_events(pong.root) if name in ("reward:-1", "reward:+1")]
    assert sorted(rows) == np.flatnonzero(reward).tolist()


@pytest.mark.slow
def test_cli_generate(tmp_path, capsys):
    code = main(["generate", "--env", "ALE/Pong-v5", "--episodes", "2", "--workers", "2",
                 "--root", str(tmp_path / "ds"), "--max-steps", "20", "--seed", "1"])
    assert code == 0
    assert "generated 2 episodes (40 steps" in capsys.readouterr().out
    assert ShardedStorage(tmp_path / "ds").episode_table().metadata(0)["seed"] == 1
