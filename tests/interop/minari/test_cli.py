"""``torchrl-ext import minari NAME_OR_DIR --root ROOT``, run in-process."""

from __future__ import annotations

import shutil

import numpy as np
from interop.minari.minari_maker import datasets_path

from torchrl_ext import ShardedStorage
from torchrl_ext.cli import main
from torchrl_ext.interop.minari import import_minari


def test_import_by_id_prints_what_was_written(minari_root, tmp_path, capsys):
    with datasets_path(minari_root):
        code = main(["import", "minari", "tests/dict-arrow-v0", "--root", str(tmp_path / "ds"), "--no-progress"])
    storage = ShardedStorage(tmp_path / "ds")
    assert code == 0 and storage.num_episodes == 4
    assert {("info", "dist"), ("info", "counts")} <= {c.key for c in storage.manifest.schema}
    assert capsys.readouterr().out == f"{tmp_path / 'ds'}: 4 episodes, {len(storage)} steps, 1 shards\n"


def test_no_infos_leaves_them_out(minari_root, tmp_path):
    code = main(["import", "minari", str(minari_root / "tests/dict-hdf5-v0"), "--root", str(tmp_path / "ds"),
                 "--no-infos", "--no-progress"])
    keys = {c.key[0] for c in ShardedStorage(tmp_path / "ds").manifest.schema}
    assert code == 0 and "info" not in keys and {"observation", "action", "next"} <= keys


def test_video_frames_are_close_to_the_raw_ones(minari_root, tmp_path, capsys):
    code = main(["import", "minari", str(minari_root / "tests/raw-pixels-hdf5-v0"), "--root", str(tmp_path / "ds"),
                 "--encoding", "video", "--no-progress"])
    storage = ShardedStorage(tmp_path / "ds")
    assert code == 0 and {c.key: c.encoding for c in storage.manifest.schema}[("observation",)] == "video"
    frames = storage[np.arange(len(storage))]["observation"].numpy()
    raw = import_minari(minari_root / "tests/raw-pixels-hdf5-v0", tmp_path / "raw", encodings={}, progress=False)
    exact = raw[np.arange(len(raw))]["observation"].numpy()
    assert frames.shape == exact.shape == (len(storage), 32, 32, 3) and frames.dtype == np.uint8
    assert np.abs(frames.astype(np.int16) - exact).mean() < 4.0  # lossy, close
    assert "4 episodes" in capsys.readouterr().out


def test_a_damaged_dataset_exits_1_with_one_line(minari_root, tmp_path, capsys):
    data = shutil.copytree(minari_root / "tests/dict-hdf5-v0", tmp_path / "src") / "data"
    (data / "main_data.hdf5").write_bytes(b"not hdf5")
    code = main(["import", "minari", str(data), "--root", str(tmp_path / "ds"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("torchrl-ext import: error: ") and "not a readable HDF5 file" in err
    assert err.count("\n") == 1


def test_unknown_id_exits_2(tmp_path, capsys):
    with datasets_path(tmp_path):
        code = main(["import", "minari", "none/missing-v0", "--root", str(tmp_path / "ds"), "--no-progress"])
    assert code == 2 and "no Minari dataset at" in capsys.readouterr().err
