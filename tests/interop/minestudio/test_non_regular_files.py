"""FIFOs named like MineGenerator episode files or MineStudio LMDB files are refused at once, never waited on."""

from __future__ import annotations

import pickle
import shutil
import uuid

import numpy as np
import pytest
import torch
from hostile_files import call_within, plant_fifo
from PIL import Image

from torchrl_ext import ShardedStorage
from torchrl_ext.format import FormatError
from torchrl_ext.interop.minestudio import MineStudioLayout, import_generated_episodes
from torchrl_ext.interop.minestudio.synthetic import write_minestudio_dataset

N = 3  # actions per generated episode
EID = str(uuid.UUID(int=7))
FIFO_LINE = "expected a regular file, found a FIFO (named pipe); replace it with the file itself"


def _generated(src):
    """One MineGenerator episode of ``N`` actions with JPEG frames (as ``Worker.save_to_file`` writes it)."""
    src.mkdir()
    with open(src / f"info_{EID}.pkl", "wb") as f:
        pickle.dump([{"health": 20.0 - t, "mine_block": {"dirt": t}} for t in range(N + 1)], f)
    with open(src / f"action_{EID}.pkl", "wb") as f:
        pickle.dump([{"buttons": torch.tensor([t % 3]), "camera": torch.tensor([60 + t])} for t in range(N)], f)
    (src / f"images_{EID}").mkdir()
    for i in range(N + 1):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(src / f"images_{EID}" / f"{i}.jpeg", quality=95)
    return src


def test_regular_generated_files_import_with_their_values(tmp_path):
    src = _generated(tmp_path / "gen")
    import_generated_episodes(src, tmp_path / "ds", encoding="raw", build_index=False, progress=False)
    td = ShardedStorage(tmp_path / "ds")[:]
    assert td["action", "buttons"].flatten().tolist() == [0, 1, 2]
    assert td["action", "camera"].flatten().tolist() == [60, 61, 62]
    assert np.abs(td["image"].numpy().astype(int).mean(axis=(1, 2, 3)) - [0, 40, 80]).max() < 3  # JPEG frames


@pytest.mark.parametrize("name", [f"action_{EID}.pkl", f"info_{EID}.pkl", f"video_{EID}.mp4", f"images_{EID}/2.jpeg"])
def test_fifo_in_a_generated_episode_is_refused_within_a_second(tmp_path, name):
    src = _generated(tmp_path / "gen")
    fifo = plant_fifo(src / name)
    err, elapsed = call_within(1.0, lambda: import_generated_episodes(
        src, tmp_path / "ds", encoding="raw", build_index=False, progress=False), fifos=[fifo])
    assert isinstance(err, FormatError) and elapsed < 1.0, (err, elapsed)
    assert str(err) == f"{fifo}: {FIFO_LINE}"


@pytest.fixture(scope="module")
def ms_small(tmp_path_factory):
    root = tmp_path_factory.mktemp("ms") / "dataset"
    write_minestudio_dataset(root, lengths=(32,), size=(16, 16))
    return root


@pytest.mark.parametrize("part", ["image", "action", "event"])
def test_fifo_lmdb_file_is_refused_within_a_second(ms_small, tmp_path, part):
    assert [e.num_frames for e in MineStudioLayout(ms_small).episodes] == [32]  # the clean dataset reads as written
    root = shutil.copytree(ms_small, tmp_path / "dataset")  # a new path: no environment of it is open yet
    data = (root / part / "data.mdb") if part == "event" else sorted((root / part).iterdir())[0] / "data.mdb"
    fifo = plant_fifo(data)
    err, elapsed = call_within(1.0, lambda: MineStudioLayout(root).events(), fifos=[fifo])
    assert isinstance(err, FormatError) and elapsed < 1.0, (err, elapsed)
    assert str(err) == f"{fifo}: {FIFO_LINE}"
