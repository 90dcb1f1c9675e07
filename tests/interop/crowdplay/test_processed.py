"""Processed trajectories equal a reference of CrowdPlay's framebuffer, array for array; its defects are fixed."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from torchrl_ext.interop.crowdplay.maker import P0, P1, TWO_PLAYER
from torchrl_ext.interop.crowdplay.reference import reference_processed

from torchrl_ext import preprocess
from torchrl_ext.interop.crowdplay import (
    CrowdPlayFrames,
    FrameBuffer,
    kept_steps,
    processed_trajectory,
)
from torchrl_ext.storages import EpisodeView


def _steps(cp_episodes, eid):
    return next(e["steps"] for e in cp_episodes if e["episode_id"] == eid)


def _assert_same(ours, ref):
    obs, acs, rew, term = ours
    r_obs, r_acs, r_rew, r_term = ref
    assert len(obs) == len(r_obs)
    for a, b in zip(obs, r_obs):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b)
    assert acs.tolist() == r_acs
    assert rew.tolist() == [float(x) for x in r_rew]
    assert term.tolist() == r_term


@pytest.mark.parametrize("kwargs", [
    {},
    {"downsample_frequency": 4},
    {"downsample_frequency": 3, "downsample_offset": 2},
    {"framestack_axis_first": True, "stack_n": 1},
    {"stack_n": 3, "skip_n": 2, "max_n": 3},
    {"warp_width": 64, "warp_height": 48, "scale": True},
    {"warp": False, "stack_n": 2, "framestack_axis_first": True},
], ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()) or "defaults")
@pytest.mark.parametrize(("eid", "agent"), [("0a1f", P0), ("1b2e", P0), (TWO_PLAYER[0], P1)])
def test_equal_to_crowdplays_framebuffer(cp_storage, cp_episodes, eid, agent, kwargs):
    ours = processed_trajectory(cp_storage, eid, agent, **kwargs)
    _assert_same(ours, reference_processed(_steps(cp_episodes, eid), agent, **kwargs))


def test_rewards_sum_since_the_previous_kept_step(cp_storage, cp_episodes):
    steps = _steps(cp_episodes, TWO_PLAYER[0])
    raw = np.array([s["reward"][P1] for s in steps], float)
    assert raw.sum() > 0
    _, _, rew, _ = processed_trajectory(cp_storage, TWO_PLAYER[0], P1, downsample_frequency=7, downsample_offset=3)
    kept = kept_steps(len(steps), 7, 3)
    bounds = np.concatenate(([0], kept + 1))
    assert rew.tolist() == [raw[a:b].sum() for a, b in zip(bounds[:-1], bounds[1:])]
    assert rew.sum() == raw.sum()


def test_the_final_step_and_its_terminal_are_kept(cp_storage, cp_episodes):
    steps = _steps(cp_episodes, "0a1f")  # 90 steps, ended by the game
    orig = reference_processed(steps, P0, downsample_frequency=4, original_last_clause=True)
    assert len(orig[0]) == 23 and orig[3][-1] == 0  # CrowdPlay's clause drops step 89 and its terminal
    obs, acs, rew, term = processed_trajectory(cp_storage, "0a1f", downsample_frequency=4)
    assert len(obs) == 24 and term[-1] == 1
    assert np.array_equal(obs[-1], reference_processed(steps, P0)[0][-1])


def test_crowdplays_cached_entry_point_fails_on_a_step_list(cp_episodes):
    cached = functools.lru_cache(maxsize=16)(reference_processed)  # what dataset.py decorates it with
    with pytest.raises(TypeError, match="unhashable type: 'list'"):
        cached(_steps(cp_episodes, "0a1f"), P0)


def test_a_view_restricts_the_lookup(cp_storage):
    view = EpisodeView(cp_storage, game="qbert")
    assert processed_trajectory(view, "3d4c")[0].shape == (45, 84, 84, 4)
    with pytest.raises(ValueError, match="not in the view"):
        processed_trajectory(view, "0a1f")


def test_two_players_need_an_agent_one_player_does_not(cp_storage, cp_episodes):
    with pytest.raises(ValueError, match=rf"episode '{TWO_PLAYER[0]}' has 2 agents \['{P0}', '{P1}'\]; pass `agent=`"):
        processed_trajectory(cp_storage, TWO_PLAYER[0])
    _assert_same(processed_trajectory(cp_storage, TWO_PLAYER[0], P1),
                 reference_processed(_steps(cp_episodes, TWO_PLAYER[0]), P1))
    _assert_same(processed_trajectory(cp_storage, "0a1f"), reference_processed(_steps(cp_episodes, "0a1f"), P0))


def test_unknown_episode_or_agent_is_named(cp_storage):
    with pytest.raises(ValueError, match=r"no episode with episode_id='0a1f' and agent='nobody'.*1 episode"):
        processed_trajectory(cp_storage, "0a1f", "nobody")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"downsample_frequency": 0}, "`downsample_frequency` must be a positive int"),
    ({"downsample_frequency": 4, "downsample_offset": 4}, r"`downsample_offset` must be an int in \[0, 3\]"),
    ({"stack_n": 0}, "`stack_n` must be a positive int"),
])
def test_bad_arguments(cp_storage, kwargs, match):
    with pytest.raises(ValueError, match=match):
        processed_trajectory(cp_storage, "0a1f", **kwargs)


def test_framebuffer_types_are_checked():
    with pytest.raises(TypeError, match="`warp` must be a bool"):
        FrameBuffer(warp=1)


def test_preset_writes_the_processed_dataset(cp_storage, cp_episodes, tmp_path):
    out = preprocess(cp_storage, CrowdPlayFrames(cp_storage.root), tmp_path / "proc", num_workers=2,
                     executor="thread", batch_rows=37, pbar=False)
    assert out.manifest.column(("observation",)).shape == (84, 84, 4)
    assert out.episode_table().metadata(3)["Score"] == 100
    first, length = out.episode_bounds
    for e, (eid, agent) in enumerate([("0a1f", P0), ("3d4c", P0), (TWO_PLAYER[0], P1)]):
        e = [0, 3, 5][e]
        rows = np.arange(first[e], first[e] + length[e])
        td = out.get(rows)
        ref = reference_processed(_steps(cp_episodes, eid), agent)
        assert np.array_equal(td["observation"].numpy(), np.stack(ref[0]))
        assert np.array_equal(td["next", "observation"][:-1].numpy(), np.stack(ref[0][1:]))


def test_a_filtered_processed_copy(cp_storage, cp_episodes, tmp_path):
    from torchrl_ext.export import export_episodes

    view = EpisodeView(cp_storage, game="space_invaders", task="insideout")
    out = export_episodes(view, tmp_path / "proc", fn=CrowdPlayFrames(cp_storage.root), progress=False)
    assert out.episode_table().values(["episode_id"]) == [("0a1f",), ("1b2e",)]
    ref = reference_processed(_steps(cp_episodes, "1b2e"), P0)
    first, length = out.episode_bounds
    assert np.array_equal(out.get(np.arange(first[1], first[1] + length[1]))["observation"].numpy(), np.stack(ref[0]))
