"""d3rlpy export of imported CrowdPlay episodes: the processed arrays, episode ends, a few BC steps."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from torchrl_ext.interop.d3rlpy import to_d3rlpy
from torchrl_ext.interop.crowdplay import ProcessedTrajectories, processed_trajectory
from torchrl_ext.storages import EpisodeView

pytestmark = pytest.mark.slow  # d3rlpy round trips and training over processed CrowdPlay episodes

d3rlpy = pytest.importorskip("d3rlpy")


def test_round_trip_of_processed_downsampled_episodes(cp_storage):
    view = EpisodeView(cp_storage, "game LIKE 'space_invaders%'", agent_id="game_0>player_0")
    buffer = to_d3rlpy(view, trajectory=ProcessedTrajectories(downsample_frequency=4))
    ids = view.metadata(["episode_id"])["episode_id"]
    assert len(buffer.episodes) == len(ids) == 4
    for ep, eid in zip(buffer.episodes, ids):
        obs, acs, rew, term = processed_trajectory(cp_storage, eid, "game_0>player_0", framestack_axis_first=True,
                                                   downsample_frequency=4)
        assert ep.observations.shape[1:] == (4, 84, 84) and ep.observations.dtype == np.uint8
        assert np.array_equal(ep.observations, obs)
        assert ep.actions.reshape(-1).tolist() == acs.tolist()
        assert ep.rewards.reshape(-1).tolist() == rew.tolist()
        assert ep.terminated == bool(term[-1])
    assert [ep.terminated for ep in buffer.episodes] == [True, False, True, True]
    assert buffer.dataset_info.action_size == 6


def test_stored_columns_by_default(cp_storage):
    view = EpisodeView(cp_storage, game="qbert")
    ep = to_d3rlpy(view).episodes[0]
    first, length = cp_storage.episode_bounds
    frames = cp_storage.reader.gather_column(("observation",), np.arange(first[3], first[3] + length[3]))
    assert np.array_equal(ep.observations, np.moveaxis(frames, -1, 1))


def test_discrete_bc_trains_a_few_steps(cp_storage):
    buffer = to_d3rlpy(EpisodeView(cp_storage, task="insideout"), trajectory=ProcessedTrajectories(4))
    bc = d3rlpy.algos.DiscreteBCConfig(batch_size=8).create(device="cpu:0")
    bc.fit(buffer, n_steps=2, n_steps_per_epoch=2, show_progress=False, save_interval=10**9,
           experiment_name="t", with_timestamp=False, logger_adapter=d3rlpy.logging.NoopAdapterFactory())
    action = bc.predict(buffer.episodes[0].observations[:2])
    assert action.shape == (2,) and set(action.tolist()) <= set(range(6))


def test_an_empty_selection_is_refused(cp_storage):
    with pytest.raises(ValueError, match="selects no episode"):
        to_d3rlpy(EpisodeView(cp_storage, game="pong"))


def test_without_d3rlpy_the_error_names_the_extra(cp_storage, monkeypatch):
    monkeypatch.setitem(sys.modules, "d3rlpy", None)
    with pytest.raises(ImportError, match=r"pip install torchrl-ext\[d3rlpy\]"):
        to_d3rlpy(cp_storage)
