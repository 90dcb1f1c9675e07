"""``torchrl-ext push ROOT URL``, and ``info``, ``verify`` and ``events`` given the URL of a pushed dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import run_cli

from torchrl_ext import ShardedStorage, read_manifest
from torchrl_ext.events import EventIndex
from torchrl_ext.remote.publish import dataset_files
from torchrl_ext.synthetic import write_synthetic

URL = "gs://test-bucket/cli/ds"


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> Path:
    root = write_synthetic(tmp_path_factory.mktemp("src") / "ds", episodes=4, length=5, obs_shape=(6, 6),
                           shard_rows=6, events_every=2, encodings={"observation": "zstd"})
    EventIndex.build(root)
    return root


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCHRL_EXT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def pushed(gcs_server, local, cache, capsys) -> str:
    proc = run_cli(capsys, "push", str(local), URL, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    return URL


def test_push_prints_what_it_uploaded(gcs_server, local, cache, capsys):
    proc = run_cli(capsys, "push", str(local), URL, "--threads", "2")
    assert proc.returncode == 0, proc.stderr
    names = dataset_files(local)
    nbytes = sum((local / n).stat().st_size for n in names)
    assert proc.stdout == (f"pushed {local} to {URL}/: {len(names)} uploaded, 0 skipped (already there), "
                           f"{nbytes} bytes\n")
    stored = {b.name: b.size for b in gcs_server.client.list_blobs(gcs_server.bucket, prefix="cli/ds/")}
    assert stored == {f"cli/ds/{n}": (local / n).stat().st_size for n in names}


def test_push_again_uploads_only_the_manifest(pushed, local, capsys):
    proc = run_cli(capsys, "push", str(local), pushed, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    manifest = (local / "dataset.json").stat().st_size
    assert proc.stdout.endswith(f": 1 uploaded, {len(dataset_files(local)) - 1} skipped (already there), "
                                f"{manifest} bytes\n")


def test_info_of_a_url_prints_the_local_summary_without_fetching_shards(pushed, local, cache, capsys):
    here = run_cli(capsys, "info", str(local))
    remote = run_cli(capsys, "info", pushed)
    assert remote.returncode == here.returncode == 0, remote.stderr
    (cache_root,) = cache.iterdir()
    lines = remote.stdout.splitlines()
    assert lines[:2] == [f"dataset   {URL}/", f"cached in {cache_root}"]
    assert lines[2:] == here.stdout.splitlines()[1:]  # rows, bytes per column, metadata, events
    assert any(line.split()[:5] == ["observation", "uint8", "[6,", "6]", "zstd"] for line in lines)
    assert list((cache_root / "shards").iterdir()) == []


def test_verify_of_a_url_checks_every_shard_in_a_cache_of_its_own(pushed, local, cache, capsys):
    proc = run_cli(capsys, "verify", pushed, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    nbytes = sum(s.bytes for s in read_manifest(local).shards)
    assert proc.stdout == f"ok: 4 shards, 20 rows, {nbytes} bytes match their checksums in {URL}\n"
    assert not cache.exists()  # the user's cache is neither used nor filled


def test_verify_of_a_url_finds_a_shard_changed_in_the_bucket_after_it_was_cached(pushed, gcs_server, cache,
                                                                                 capsys):
    storage = ShardedStorage(pushed)
    storage[:]  # every shard fetched, verified and cached
    storage.reader.close()
    name = "cli/ds/shards/000002/action.memmap"
    blob = gcs_server.client.bucket(gcs_server.bucket).blob(name)
    data = bytearray(blob.download_as_bytes())
    data[3] ^= 0x01
    blob.upload_from_string(bytes(data))
    proc = run_cli(capsys, "verify", pushed, "--no-progress")
    assert proc.returncode == 1 and proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith("torchrl-ext verify: corrupt: ") and "shards/000002: checksum " in line
    assert "does not match the manifest's" in line


def test_events_of_a_url_prints_the_local_table(pushed, local, capsys):
    here = run_cli(capsys, "events", str(local), "--regex", "tick:.*", "--win-len", "2", "--where", "score > 0")
    remote = run_cli(capsys, "events", pushed, "--regex", "tick:.*", "--win-len", "2", "--where", "score > 0")
    assert remote.returncode == here.returncode == 0, remote.stderr
    assert remote.stdout == here.stdout and remote.stderr == ""  # the pushed index: no rebuild warning
    # ticks at steps 0, 2, 4 of 4 episodes; windows in the 3 episodes with score > 0
    assert remote.stdout.splitlines()[-1].split() == ["total", "12", "9"]


def test_events_build_of_a_url_is_a_usage_error(pushed, capsys):
    proc = run_cli(capsys, "events", pushed, "--build")
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"torchrl-ext events: error: `root` {URL}/ is a remote dataset")


def test_push_of_a_directory_that_is_no_dataset_is_a_usage_error(gcs_server, tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    proc = run_cli(capsys, "push", str(tmp_path / "notes"), URL)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (f"torchrl-ext push: error: {tmp_path / 'notes' / 'dataset.json'}: no dataset manifest "
                           "found; expected a directory written by torchrl_ext.ShardWriter\n")
    assert list(gcs_server.client.list_blobs(gcs_server.bucket)) == []


@pytest.mark.parametrize(("args", "match"), [
    (["--threads", "0"], "`--threads` must be a positive int"),
    ([], "`url` must be a URL like gs://bucket/prefix, got 'not-a-url'"),
])
def test_bad_push_arguments_are_usage_errors(local, capsys, args, match):
    proc = run_cli(capsys, "push", str(local), "not-a-url" if not args else URL, *args)
    assert proc.returncode == 2 and match in proc.stderr
