"""``torchrl-ext verify ROOT``: 0 when every shard matches, 1 naming a corrupt shard, 2 for usage."""

from __future__ import annotations

import subprocess

import pytest
from helpers import run_cli

from torchrl_ext import read_manifest
from torchrl_ext.synthetic import write_synthetic


def _run(capsys, *args: str) -> subprocess.CompletedProcess:
    return run_cli(capsys, "verify", *args)


@pytest.fixture
def dataset(tmp_path):
    return write_synthetic(tmp_path / "ds", episodes=4, length=5, obs_shape=(6, 6), shard_rows=6)


def test_intact_dataset_passes(dataset, capsys):
    proc = _run(capsys, str(dataset))
    assert proc.returncode == 0, proc.stderr
    nbytes = sum(s.bytes for s in read_manifest(dataset).shards)
    assert proc.stdout == f"ok: 4 shards, 20 rows, {nbytes} bytes match their checksums in {dataset}\n"
    assert "4/4" in proc.stderr  # the per-shard progress bar reached the end


def test_flipped_byte_is_corrupt(dataset, capsys):
    target = sorted((dataset / "shards").glob("*/observation.memmap"))[2]
    data = bytearray(target.read_bytes())
    data[7] ^= 0x01
    target.write_bytes(bytes(data))
    proc = _run(capsys, str(dataset), "--no-progress")
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"torchrl-ext verify: corrupt: {target.parent}: checksum ")
    assert "does not match the manifest's" in line


def test_missing_dataset_is_a_usage_error(tmp_path, capsys):
    proc = _run(capsys, str(tmp_path / "nope"))
    assert proc.returncode == 2
    assert "torchrl-ext verify: error: " in proc.stderr and "no dataset manifest found" in proc.stderr


def test_no_root_is_a_usage_error(capsys):
    proc = _run(capsys)
    assert proc.returncode == 2
    assert "the following arguments are required: root" in proc.stderr


def test_meta_json_flip_is_corrupt_in_process(dataset, capsys):
    from torchrl_ext.cli import main

    target = dataset / "shards" / "000001" / "meta.json"
    data = bytearray(target.read_bytes())
    data[2] ^= 0x01
    target.write_bytes(bytes(data))
    assert main(["verify", str(dataset), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"torchrl-ext verify: corrupt: {target}: checksum crc32:")
    assert "the TensorDict metadata is corrupt" in err


def test_old_manifest_says_what_was_not_checked(dataset, capsys):
    import json

    from torchrl_ext.cli import main
    from torchrl_ext.format import MANIFEST_NAME, manifest_crc

    raw = json.loads((dataset / MANIFEST_NAME).read_text())
    for shard in raw["shards"]:
        del shard["meta_crcs"]
    raw["manifest_crc"] = manifest_crc(raw)
    (dataset / MANIFEST_NAME).write_text(json.dumps(raw))
    assert main(["verify", str(dataset), "--no-progress"]) == 0
    nbytes = sum(s["bytes"] for s in raw["shards"])
    assert capsys.readouterr().out == (
        f"ok: 4 shards, 20 rows, {nbytes} bytes match their checksums in {dataset}\n"
        "not checked (the dataset was written before their checksums were recorded): the TensorDict meta.json "
        "files of 4 of 4 shards\n")
