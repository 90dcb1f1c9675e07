"""``torchrl-ext verify ROOT``: 0 when every shard matches, 1 naming a corrupt shard, 2 for usage."""

from __future__ import annotations

import subprocess
import sys

import pytest

from torchrl_ext import read_manifest
from torchrl_ext.synthetic import write_synthetic


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torchrl_ext", "verify", *args], capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def dataset(tmp_path):
    return write_synthetic(tmp_path / "ds", episodes=4, length=5, obs_shape=(6, 6), shard_rows=6)


@pytest.mark.slow  # loads torch in a subprocess
def test_intact_dataset_passes(dataset):
    proc = _run(str(dataset))
    assert proc.returncode == 0, proc.stderr
    nbytes = sum(s.bytes for s in read_manifest(dataset).shards)
    assert proc.stdout == f"ok: 4 shards, 20 rows, {nbytes} bytes match their checksums in {dataset}\n"
    assert "4/4" in proc.stderr  # the per-shard progress bar reached the end


@pytest.mark.slow  # loads torch in a subprocess
def test_flipped_byte_is_corrupt(dataset):
    target = sorted((dataset / "shards").glob("*/observation.memmap"))[2]
    data = bytearray(target.read_bytes())
    data[7] ^= 0x01
    target.write_bytes(bytes(data))
    proc = _run(str(dataset), "--no-progress")
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"torchrl-ext verify: corrupt: {target.parent}: checksum ")
    assert "does not match the manifest's" in line


@pytest.mark.slow  # loads torch in a subprocess
def test_missing_dataset_is_a_usage_error(tmp_path):
    proc = _run(str(tmp_path / "nope"))
    assert proc.returncode == 2
    assert "torchrl-ext verify: error: " in proc.stderr and "no dataset manifest found" in proc.stderr


def test_no_root_is_a_usage_error():
    proc = _run()
    assert proc.returncode == 2
    assert "the following arguments are required: root" in proc.stderr
