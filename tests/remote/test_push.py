"""Publishing a dataset directory to a bucket: every file byte-exact, dataset.json last, resumable."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from torchrl_ext import ShardWriter
from torchrl_ext.remote import RemoteSourceError
from torchrl_ext.remote.publish import dataset_files, push
from torchrl_ext.remote.stores import GCSStore
from torchrl_ext.storages import ShardReader
from torchrl_ext.synthetic import episode_length, make_episode

URL = "gs://test-bucket/data/ds"
PREFIX = "data/ds/"


def _remote_objects(gcs_server) -> dict[str, bytes]:
    blobs = gcs_server.client.list_blobs(gcs_server.bucket, prefix=PREFIX)
    return {b.name.removeprefix(PREFIX): b.download_as_bytes() for b in blobs}


def _generations(gcs_server) -> dict[str, int]:
    return {b.name.removeprefix(PREFIX): b.generation for b in gcs_server.client.list_blobs(gcs_server.bucket,
                                                                                            prefix=PREFIX)}


@pytest.mark.parametrize("kind", ["raw", "zstd"])
def test_push_uploads_every_file_byte_exact(gcs_server, local_datasets, kind):
    root = local_datasets[kind]
    result = push(root, URL, progress=False)
    local = {rel: (root / rel).read_bytes() for rel in dataset_files(root)}
    assert _remote_objects(gcs_server) == local
    assert (result.url, result.uploaded, result.skipped) == ("gs://test-bucket/data/ds/", len(local), 0)
    assert result.bytes_uploaded == sum(len(v) for v in local.values())


def test_a_second_push_uploads_only_dataset_json(gcs_server, local_datasets):
    root = local_datasets["raw"]
    push(root, URL, progress=False)
    before = _generations(gcs_server)
    result = push(root, URL, progress=False)
    assert (result.uploaded, result.skipped) == (1, len(before) - 1)
    assert result.bytes_uploaded == (root / "dataset.json").stat().st_size
    after = _generations(gcs_server)
    assert {n for n in after if after[n] != before[n]} == {"dataset.json"}


def test_an_interrupted_push_publishes_nothing_and_resumes(gcs_server, local_datasets, tmp_path, monkeypatch,
                                                           same_rows):
    root = local_datasets["raw"]
    real_put, done, lock = GCSStore.put, [], threading.Lock()

    def put_then_fail(self, src, rel):
        with lock:
            if len(done) == 10:
                raise ConnectionResetError("connection reset by peer")
            done.append(rel)
        return real_put(self, src, rel)

    with monkeypatch.context() as patch, pytest.raises(ConnectionResetError, match=r"connection reset by peer"):
        patch.setattr(GCSStore, "put", put_then_fail)
        push(root, URL, progress=False, threads=2)
    assert sorted(_remote_objects(gcs_server)) == sorted(done) and "dataset.json" not in done
    with pytest.raises(RemoteSourceError, match=r"^gs://test-bucket/data/ds/: no dataset\.json there; "):
        ShardReader(URL, cache_dir=tmp_path / "cache")
    result = push(root, URL, progress=False)
    files = dataset_files(root)
    assert (result.skipped, result.uploaded) == (10, len(files) - 10)
    rows = np.arange(65)
    same_rows(ShardReader(root).gather(rows), ShardReader(URL, cache_dir=tmp_path / "cache").gather(rows))


def _write(root, action_offset: int):
    """The synthetic episodes with ``action`` shifted: other values, the same file sizes."""
    with ShardWriter.create(root, shard_rows=24) as writer:
        for e in range(5):
            episode = make_episode(e, episode_length(e, (3, 17)), (3,))
            episode["action"] = episode["action"] + action_offset
            writer.add_episode(episode)
    return root


def test_a_push_through_fsspec_uploads_changed_files_of_the_same_size(tmp_path, same_rows):
    """A directory URL (fsspec) lists no crc32c: a file of the same size is uploaded again, not skipped."""
    url = (tmp_path / "bucket").as_uri()
    push(_write(tmp_path / "a", 0), url, progress=False)
    b = _write(tmp_path / "b", 1)
    result = push(b, url, progress=False)
    assert result.uploaded > 1
    rows = np.arange(65)
    got = ShardReader(url, cache_dir=tmp_path / "cache").gather(rows)
    same_rows(ShardReader(b).gather(rows), got)
    np.testing.assert_array_equal(got[("action",)], ShardReader(tmp_path / "a").gather(rows)[("action",)] + 1)


def test_a_url_that_is_not_a_url_is_refused(local_datasets):
    with pytest.raises(ValueError, match=r"^`url` must be a URL like gs://bucket/prefix, got 'test-bucket/x'$"):
        push(local_datasets["raw"], "test-bucket/x", progress=False)


@pytest.mark.parametrize("what", ["empty", "missing"])
def test_a_directory_that_is_not_a_dataset_is_refused(gcs_server, tmp_path, what):
    root = tmp_path / "d"
    if what == "empty":
        root.mkdir()
    with pytest.raises(FileNotFoundError, match=rf"^{root}/dataset\.json: no dataset manifest found; expected a "
                                                r"directory written by torchrl_ext\.ShardWriter$"):
        push(root, URL, progress=False)
    assert _remote_objects(gcs_server) == {}


def test_a_missing_bucket_says_so_and_what_to_check(gcs_server, local_datasets):
    with pytest.raises(RemoteSourceError, match=r"^cannot push to gs://no-such-bucket/x/: bucket not found "
                                                r"\(HTTP 404\); check the bucket name and that your credentials "
                                                r"may write to it$"):
        push(local_datasets["raw"], "gs://no-such-bucket/x", progress=False)
