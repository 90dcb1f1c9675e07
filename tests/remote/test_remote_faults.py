"""A remote dataset over a misbehaving network or with tampered objects: each case ends within its deadline
with one clear error or a verified retry, and nothing unverified ever appears under ``shards/``.

Network faults come from the loopback ``FaultServer`` (``tests/gcs_server.py``), serving the objects of a
pushed dataset; tampered objects are uploaded to the GCS emulator over the ones a push put there.
"""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest

from torchrl_ext import FormatError
from torchrl_ext.remote import (
    ChecksumMismatchError,
    DownloadStalledError,
    RemoteSourceError,
    SourceUnreachableError,
)
from torchrl_ext.remote.dataset import RemoteDataset
from torchrl_ext.remote.publish import dataset_files
from torchrl_ext.storages import ShardReader
from torchrl_ext.synthetic import write_synthetic

URL = "gs://test-bucket/data/ds/"
DEADLINE = 1.0
GUARD = 30  # seconds (pytest-timeout): every case is bounded by DEADLINE, a hang fails instead of waiting


@pytest.fixture
def served(fault_server, local_datasets, tmp_path):
    """``(fault server, opened RemoteDataset)``: the raw dataset's objects served, its metadata cached."""
    root = local_datasets["raw"]
    fs = fault_server({"data/ds/" + rel: (root / rel).read_bytes() for rel in dataset_files(root)})
    return fs, RemoteDataset.open(URL, cache_dir=tmp_path / "cache", deadline=DEADLINE)


def _nothing_cached(remote: RemoteDataset) -> bool:
    """No shard under ``shards/`` and no download left in the staging area."""
    return not any((remote.root / "shards").iterdir()) and not any((remote.root / ".cache" / "staging").iterdir())


def _same_as_local(remote: RemoteDataset, local_root, rows) -> None:
    got, expected = ShardReader(remote.root).gather(rows), ShardReader(local_root).gather(rows)
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=str(key))


@pytest.mark.slow
@pytest.mark.timeout(GUARD)
@pytest.mark.parametrize(("media", "limit", "why"), [
    ("reset", 0, r"connection reset by peer|connection closed before the response was complete"),
    # a stall reads as either, depending on whether the response headers arrived before the read timeout
    ("stall", 40, r"read timed out|the server accepted the connection but did not answer within 1 s"),
])
def test_a_shard_that_never_arrives_ends_at_the_deadline(served, media, limit, why):
    fs, remote = served
    fs.media, fs.limit = media, limit
    with pytest.raises(DownloadStalledError, match=rf"^gs://test-bucket/data/ds/shards/000001/.*: no data from "
                                                   rf"{fs.endpoint} for 1 s \(({why})\); "):
        remote.fetch([1])
    assert _nothing_cached(remote)


@pytest.mark.slow
@pytest.mark.timeout(GUARD)
def test_a_server_dying_during_a_shard_fetch_ends_at_the_deadline(served):
    fs, remote = served
    fs.die_after_listing = True  # the shard's listing is its last answer
    with pytest.raises(DownloadStalledError, match=rf"no data from {fs.endpoint} for 1 s \(connection failed: "
                                                   r"Connection refused\)"):
        remote.fetch([1])
    assert _nothing_cached(remote)


def test_wrong_bytes_fail_their_crc32c_and_nothing_is_cached(served):
    fs, remote = served
    fs.media = "wrong"
    with pytest.raises(ChecksumMismatchError, match=r"^gs://test-bucket/data/ds/shards/000001/.* failed its crc32c "
                                                    r"check 3 times"):
        remote.fetch([1])
    assert _nothing_cached(remote)


def test_a_cut_response_is_resumed_to_a_verified_shard(served, local_datasets):
    fs, remote = served
    fs.media, fs.limit = "close", 100  # every response stops after 100 bytes; each retry goes on from there
    remote.fetch([1])
    assert [p.name for p in (remote.root / "shards").iterdir()] == ["000001"]
    _same_as_local(remote, local_datasets["raw"], np.arange(24, 47))


def test_503s_on_the_shard_listing_are_retried(served, local_datasets):
    fs, remote = served
    fs.listing_errors = fs.listing_requests + 2
    remote.fetch([1])
    assert fs.listing_requests == fs.listing_errors + 1
    _same_as_local(remote, local_datasets["raw"], np.arange(24, 47))


@pytest.mark.slow
@pytest.mark.timeout(GUARD)
def test_503s_until_the_deadline_are_named(served):
    fs, remote = served
    fs.listing_errors = 10**6
    with pytest.raises(SourceUnreachableError, match=rf"^{fs.endpoint} kept failing for 1 s while listing "
                                                     r"gs://test-bucket/data/ds/shards/000001/ \(HTTP 503\); "):
        remote.fetch([1])
    assert _nothing_cached(remote)


def test_a_shard_file_missing_remotely_is_named(served):
    fs, remote = served
    del fs.objects["data/ds/shards/000001/action.memmap"]
    with pytest.raises(RemoteSourceError, match=r"^gs://test-bucket/data/ds/shards/000001: 1 files of the shard "
                                                r"are missing remotely \(e\.g\. shards/000001/action\.memmap\); "
                                                r"the dataset was not pushed completely: push it again$"):
        remote.fetch([1])
    assert _nothing_cached(remote)


# ------------------------------------------------------------------ opening
@pytest.mark.slow
@pytest.mark.timeout(GUARD)
def test_opening_on_a_server_that_never_answers_ends_at_the_deadline(fault_server, tmp_path):
    fs = fault_server({}, silent=True)
    with pytest.raises(SourceUnreachableError, match=rf"^cannot reach {fs.endpoint} \(the server accepted the "
                                                     r"connection but did not answer within 1 s\) to read "
                                                     r"gs://test-bucket/data/ds/dataset\.json; "):
        RemoteDataset.open(URL, cache_dir=tmp_path / "cache", deadline=DEADLINE)


@pytest.mark.timeout(GUARD)
def test_opening_on_a_closed_port_fails_at_once(monkeypatch, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    with pytest.raises(SourceUnreachableError, match=rf"^cannot reach http://127\.0\.0\.1:{port} \(connection "
                                                     r"failed: Connection refused\) to read "):
        ShardReader(URL, cache_dir=tmp_path / "cache")  # the default deadline is 120 s: not waited for


# ------------------------------------------------------------------ tampered objects
def _upload(gcs_server, rel: str, data: bytes) -> None:
    gcs_server.client.bucket(gcs_server.bucket).blob("data/ds/" + rel).upload_from_string(data)


def test_an_edited_dataset_json_fails_its_self_checksum(publish, gcs_server, tmp_path):
    pub = publish()
    manifest = json.loads((pub.local / "dataset.json").read_bytes())
    manifest["source"]["kind"] = "edited"
    _upload(gcs_server, "dataset.json", json.dumps(manifest).encode())
    with pytest.raises(FormatError, match=r"^gs://test-bucket/data/ds/dataset\.json: the manifest's checksum "
                                          r"'crc32:[0-9a-f]{8}' does not match its content \(crc32:[0-9a-f]{8}\) "
                                          r"\(as fetched; nothing was cached\): .*; push the dataset again$"):
        ShardReader(pub.url, cache_dir=tmp_path / "cache")
    assert not any((tmp_path / "cache").rglob("dataset.json"))


def test_a_replaced_episode_table_fails_its_content_checksum(publish, gcs_server, tmp_path):
    pub = publish()
    other = write_synthetic(tmp_path / "other", episodes=5, length=(3, 18), obs_shape=(3,), shard_rows=24)
    _upload(gcs_server, "episodes.sqlite", (other / "episodes.sqlite").read_bytes())
    with pytest.raises(FormatError, match=r"^gs://test-bucket/data/ds/episodes\.sqlite: content checksum "
                                          r"crc32:[0-9a-f]{8}, the manifest says crc32:[0-9a-f]{8} \(as fetched; "
                                          r"nothing was cached\): .*; push the dataset again$"):
        ShardReader(pub.url, cache_dir=tmp_path / "cache")
    assert not any((tmp_path / "cache").rglob("episodes.sqlite"))


def test_a_changed_shard_file_fails_its_check_and_nothing_is_cached(publish, gcs_server, tmp_path):
    pub = publish()
    rel = "shards/000001/action.memmap"
    data = bytearray((pub.local / rel).read_bytes())
    data[3] ^= 0xFF  # the object's own crc32c matches: only the manifest's shard checksum can tell
    _upload(gcs_server, rel, bytes(data))
    reader = ShardReader(pub.url, cache_dir=tmp_path / "cache")
    with pytest.raises(FormatError, match=r"^gs://test-bucket/data/ds/shards/000001: checksum crc32-files:\w+ does "
                                          r"not match the manifest's crc32-files:\w+ .*push the dataset again$"):
        reader.gather(np.array([30]))
    assert not any((reader.root / "shards").iterdir())
    assert not any((reader.root / ".cache" / "staging").iterdir())
    reader.gather(np.array([5]))  # the other shards still read
    reader.close()
