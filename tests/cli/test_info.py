"""``torchrl-ext info ROOT``: exit status and output, in this process and once through a closed pipe."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import run_cli

from torchrl_ext.synthetic import write_synthetic


def test_info_prints_summary_and_schema(tmp_path, capsys):
    root = write_synthetic(tmp_path / "ds", episodes=3, length=4, obs_shape=(84, 84), shard_rows=5)
    proc = run_cli(capsys, "info", str(root))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "shards    3" in lines and "rows      12" in lines and "episodes  3" in lines
    assert any(line.split()[:4] == ["observation", "uint8", "[84,", "84]"] for line in lines)
    assert any(line.split()[:2] == ["next/observation", "uint8"] and "next row" in line for line in lines)
    nbytes = sum(p.stat().st_size for p in (root / "shards").rglob("*.memmap"))
    assert f"bytes     {nbytes} " in proc.stdout


@pytest.mark.slow  # loads torch in a subprocess
def test_info_into_a_closed_pipe_stops_quietly(tmp_path):
    """`torchrl-ext info X | head -0`: the reader is gone before anything is written."""
    root = write_synthetic(tmp_path / "ds", episodes=3, length=4, obs_shape=(2,))
    proc = subprocess.Popen([sys.executable, "-m", "torchrl_ext.cli", "info", str(root)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # long before the child has imported anything
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 141 and err == b""


def test_info_on_missing_dataset_fails_clearly(tmp_path, capsys):
    proc = run_cli(capsys, "info", str(tmp_path / "nope"))
    assert proc.returncode == 2
    assert "torchrl-ext info: error:" in proc.stderr and "no dataset manifest found" in proc.stderr


def test_info_shows_encodings_metadata_and_event_counts(tmp_path, capsys):
    root = write_synthetic(tmp_path / "ds", episodes=4, length=9, obs_shape=(16, 16), events_every=3,
                           encodings={"observation": "zstd"})
    proc = run_cli(capsys, "info", str(root))
    assert proc.returncode == 0, proc.stderr
    obs = next(line.split() for line in proc.stdout.splitlines() if line.startswith("observation "))
    on_disk = sum(p.stat().st_size for p in (root / "shards").glob("*/observation.*"))  # final/ aside
    assert obs[4:7] == ["zstd", str(on_disk), str(36 * 16 * 16)]
    assert float(obs[7].rstrip("x")) == pytest.approx(36 * 16 * 16 / on_disk, rel=0.01)
    assert "metadata  game (text), score (real)" in proc.stdout
    assert "events    16 in 1 log file(s)" in proc.stdout  # 3 ticks + 1 end per episode
    assert any(line.split() == ["tick:0", "12"] for line in proc.stdout.splitlines())
