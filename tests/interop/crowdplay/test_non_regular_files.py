"""A FIFO (or another non-regular file) named like a CrowdPlay trajectory is refused at once, never waited on."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from hostile_files import NOT_REGULAR, call_within, plant_fifo

from torchrl_ext import FormatError
from torchrl_ext.interop.crowdplay import CrowdPlayDir, import_crowdplay, load_trajectory
from torchrl_ext.interop.crowdplay.layout import make_trajectory, write_crowdplay_dir
from torchrl_ext.storages import ShardedStorage  # noqa: F401 - loads tensordict before any clock starts

T = 3


def _tiny_dir(path, compression):
    agent = {"frames": np.arange(T * 4 * 4 * 3, dtype=np.uint8).reshape(T, 4, 4, 3), "actions": np.arange(T),
             "rewards": np.zeros(T), "dones": np.arange(T) == T - 1, "ram": np.zeros((T, 128), np.uint8),
             "lives": np.full(T, 3)}
    episode = {"episode_id": "ep0", "environment_id": "env0", "task_id": "task0",
               "steps": make_trajectory({"game_0": agent})}
    return write_crowdplay_dir(path, [episode], compression=compression)


@pytest.mark.parametrize("compression", ["bz2", "gz", "none"])
def test_fifo_trajectory_is_refused_within_a_second(tmp_path, compression):
    src = _tiny_dir(tmp_path / "cp", compression)
    (path,) = [e.trajectory for e in CrowdPlayDir(src).episodes]
    steps = load_trajectory(path)  # the file as written reads back
    assert [s["action"]["game_0"]["game"] for s in steps] == [0, 1, 2]
    assert np.array_equal(steps[2]["prev_obs"]["game_0"]["image"], np.arange(96, 144, dtype=np.uint8).reshape(4, 4, 3))
    fifo = plant_fifo(path)
    err, elapsed = call_within(1.0, lambda: load_trajectory(fifo), fifos=[fifo])
    assert isinstance(err, FormatError) and elapsed < 1.0
    assert str(err).startswith(f"{fifo}: ") and "\n" not in str(err)
    with pytest.raises(FormatError, match=NOT_REGULAR):
        load_trajectory(fifo)


def test_import_stops_at_a_fifo_trajectory(cp_dir, tmp_path):
    src = shutil.copytree(cp_dir, tmp_path / "cp")
    first = CrowdPlayDir(src).episodes[0].trajectory
    fifo = plant_fifo(first)
    err, elapsed = call_within(30.0, lambda: import_crowdplay(src, tmp_path / "ds", progress=False), fifos=[fifo])
    assert isinstance(err, FormatError) and elapsed < 1.0, (err, elapsed)
    assert str(err) == f"{fifo}: expected a regular file, found a FIFO (named pipe); replace it with the file itself"
