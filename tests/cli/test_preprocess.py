"""``torchrl-ext preprocess SRC DEST --preset ...``: the presets' values in the written dataset."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch
from helpers import run_cli

from torchrl_ext import ShardedStorage
from torchrl_ext.cli.preprocess import build_fn
from torchrl_ext.synthetic import obs_value, write_synthetic


def _run(capsys, *args: str) -> subprocess.CompletedProcess:
    return run_cli(capsys, "preprocess", *args)


@pytest.fixture
def dataset(tmp_path):
    return write_synthetic(tmp_path / "src", episodes=4, length=(3, 7), obs_shape=(12, 10), shard_rows=8)


def test_resize_stack_float(dataset, tmp_path, capsys):
    dest = tmp_path / "out"
    proc = _run(capsys, str(dataset), str(dest), "--preset", "resize", "6", "5", "--preset", "stack", "3",
                "--preset", "float", "--workers", "2", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    src, out = ShardedStorage(dataset), ShardedStorage(dest)
    assert proc.stdout == f"{out.root}: {len(src)} rows, 4 episodes, observation float32 [3, 6, 5]\n"
    assert len(out) == len(src)
    td = out.get(torch.arange(len(out)))
    assert td["observation"].shape == (len(src), 3, 6, 5)
    episode, step = td["episode"].numpy(), td["step"].numpy()
    expected = np.stack([obs_value(episode, np.maximum(step - k, 0)) for k in (2, 1, 0)], 1) / 255
    got = td["observation"].numpy()
    assert np.allclose(got, expected[:, :, None, None], atol=1e-6)  # constant frames stay constant
    assert torch.equal(td["action"], src.get(torch.arange(len(src)))["action"])
    last = np.flatnonzero(np.diff(episode, append=-1) != 0)[0]  # the first episode's last row
    assert np.allclose(td["next", "observation"][last, :2].numpy(), got[last, 1:])


def test_grayscale_of_rgb(tmp_path, capsys):
    src = write_synthetic(tmp_path / "rgb", episodes=2, length=3, obs_shape=(4, 4, 3))
    dest = tmp_path / "gray"
    proc = _run(capsys, str(src), str(dest), "--preset", "grayscale", "--workers", "0", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    td = ShardedStorage(dest).get(torch.arange(6))
    assert td["observation"].shape == (6, 4, 4) and td["observation"].dtype == torch.uint8
    value = obs_value(td["episode"].numpy(), td["step"].numpy())
    assert np.array_equal(td["observation"][:, 0, 0].numpy(), value)  # 0.299 + 0.587 + 0.114 = 1


@pytest.mark.parametrize(("preset", "match"), [
    (["nope"], r"unknown preset 'nope'; expected one of \['float', 'grayscale', 'resize', 'stack'\]"),
    (["resize", "6"], r"preset 'resize' takes 2 argument\(s\) H W, got \['6'\]"),
    (["stack", "x"], r"preset 'stack' takes integer N, got \['x'\]"),
    (["stack", "0"], r"preset 'stack' takes positive N, got \[0\]"),
    (["float", "1"], r"preset 'float' takes 0 argument\(s\), got \['1'\]; e.g. --preset float$"),
])
def test_bad_presets(preset, match):
    with pytest.raises(ValueError, match=match):
        build_fn([preset], "unused")


def test_bad_preset_is_a_usage_error_naming_the_presets(dataset, tmp_path, capsys):
    proc = _run(capsys, str(dataset), str(tmp_path / "out"), "--preset", "blur")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == ("torchrl-ext preprocess: error: unknown preset 'blur'; expected one "
                                            "of ['float', 'grayscale', 'resize', 'stack']")
    assert not (tmp_path / "out").exists()


def test_preset_is_required(dataset, tmp_path, capsys):
    proc = _run(capsys, str(dataset), str(tmp_path / "out"))
    assert proc.returncode == 2 and "the following arguments are required: --preset" in proc.stderr
