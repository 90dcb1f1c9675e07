"""Reading a pushed dataset by its URL: the same rows as the local dataset, metadata at open, shards on first touch."""

from __future__ import annotations

import multiprocessing
import pickle
import re

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchrl.data import TensorDictReplayBuffer
from torchrl.data.replay_buffers import RandomSampler

from torchrl_ext import ShardedStorage
from torchrl_ext.datasets.loader import loader_context
from torchrl_ext.format import read_manifest
from torchrl_ext.remote import RemoteSourceError
from torchrl_ext.remote.dataset import RemoteDataset, shard_names
from torchrl_ext.remote.publish import dataset_files
from torchrl_ext.remote.urls import parse_url
from torchrl_ext.storages import RowDataset, ShardReader, collate_rows
from torchrl_ext.testing.synthetic_reference import check_rows, reference_rows

EPISODES, LENGTH, OBS_SIZE = 5, (3, 17), 3


@pytest.mark.parametrize("kind", ["raw", "zstd"])
def test_every_row_reads_as_the_local_dataset(publish, tmp_path, same_rows, kind):
    pub = publish(kind)
    local, remote = ShardReader(pub.local), ShardReader(pub.url, cache_dir=tmp_path / "cache")
    rows = np.arange(local.num_rows)
    got = remote.gather(rows)
    same_rows(local.gather(rows), got)
    _, _, nxt = reference_rows(EPISODES, LENGTH)
    np.testing.assert_array_equal(got[("next", "observation")], np.repeat(nxt[:, None], OBS_SIZE, axis=1))
    assert remote.is_remote and not local.is_remote
    remote.close()


@pytest.mark.parametrize("kind", ["raw", "zstd"])
def test_batches_across_shard_ends_and_episode_ends(publish, tmp_path, same_rows, kind):
    pub = publish(kind)
    local, remote = ShardReader(pub.local), ShardReader(pub.url, cache_dir=tmp_path / "cache")
    edges = np.array([23, 24, 47, 48, 64, 2, 3, 19, 20, 35, 36, 50, 51])  # shard ends, then episode ends/starts
    same_rows(local.gather(edges), remote.gather(edges))
    order = np.random.default_rng(0).permutation(local.num_rows)
    for batch in np.array_split(order, 5):
        same_rows(local.gather(batch), remote.gather(batch))
    remote.close()


def test_open_fetches_the_metadata_and_no_shard(publish, downloads, tmp_path, present):
    pub = publish("zstd")
    reader = ShardReader(pub.url, cache_dir=tmp_path / "cache")
    assert present(reader.root) == []
    assert dict(downloads) == {name: 1 for name in pub.metadata()}
    assert {"dicts/observation.zdict", "episodes.sqlite", "dataset.json"} <= set(downloads)
    reader.close()


def test_a_read_fetches_the_shards_it_touches_once(publish, downloads, tmp_path, present):
    pub = publish()
    reader = ShardReader(pub.url, cache_dir=tmp_path / "cache")
    downloads.clear()
    reader.gather(np.array([30, 31, 40]))  # inside shard 1, not its last row
    reader.gather(np.array([25, 41]))
    manifest = read_manifest(pub.local)
    assert dict(downloads) == {name: 1 for name in shard_names(manifest, manifest.shards[1])}
    assert present(reader.root) == ["000001"]
    reader.close()


def test_reopening_an_unchanged_dataset_downloads_nothing(publish, downloads, tmp_path, same_rows):
    pub = publish()
    first = ShardReader(pub.url, cache_dir=tmp_path / "cache")
    rows = np.arange(0, 65, 7)
    before = first.gather(rows)
    first.close()
    downloads.clear()
    again = ShardReader(pub.url, cache_dir=tmp_path / "cache")
    same_rows(before, again.gather(rows))
    assert again.root == first.root and dict(downloads) == {}
    again.close()


def test_replay_buffer_samples_remote_rows(publish, tmp_path):
    pub = publish("zstd")
    storage = ShardedStorage(pub.url, cache_dir=tmp_path / "cache")
    local = ShardedStorage(pub.local)
    rb = TensorDictReplayBuffer(storage=storage, sampler=RandomSampler(), batch_size=16)
    torch.manual_seed(0)
    ref = reference_rows(EPISODES, LENGTH)
    for _ in range(3):
        batch, info = rb.sample(return_info=True)
        index = info["index"].numpy()
        check_rows(batch, index, ref, obs_size=OBS_SIZE)
        assert (batch.select(*local[index].keys(True, True)) == local[index]).all()
    storage.reader.close()


def test_dataloader_workers_share_the_cache(publish, downloads, tmp_path):
    pub = publish()
    storage = ShardedStorage(pub.url, cache_dir=tmp_path / "cache")
    downloads.clear()
    loader = DataLoader(RowDataset(storage), batch_size=6, num_workers=2, collate_fn=collate_rows,
                        multiprocessing_context=loader_context("fork"), timeout=30)  # a stuck worker fails
    batches = list(loader)
    got, expected = torch.cat(batches), ShardedStorage(pub.local)[:]
    assert set(got.keys(True, True)) == set(expected.keys(True, True)) and (got == expected).all()
    shard_files = {n for n in dataset_files(pub.local) if n.startswith("shards/")}
    assert dict(downloads) == {name: 1 for name in shard_files}  # two workers, one download of each file


def test_a_pickled_reader_reopens_the_cache_root(publish, downloads, tmp_path, same_rows):
    pub = publish()
    reader = ShardReader(pub.url, cache_dir=tmp_path / "cache")
    rows = np.arange(20, 30)
    expected = reader.gather(rows)
    downloads.clear()
    copy = pickle.loads(pickle.dumps(reader))
    assert copy.root == reader.root and copy.is_remote
    same_rows(expected, copy.gather(rows))
    assert dict(downloads) == {}  # the copy found its shards and metadata in the cache
    copy.close()
    reader.close()


def _read_in_child(reader: ShardReader, rows: np.ndarray, expected: dict) -> None:
    got = reader.gather(rows)
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value)


def test_a_forked_reader_opens_connections_of_its_own(fault_server, local_datasets, tmp_path):
    """A forked process never talks through the keep-alive connections its parent opened."""
    root = local_datasets["raw"]
    fs = fault_server({"data/ds/" + rel: (root / rel).read_bytes() for rel in dataset_files(root)})
    remote = RemoteDataset.open("gs://test-bucket/data/ds", cache_dir=tmp_path / "cache", deadline=5)
    reader = ShardReader(remote.root)
    reader.gather(np.array([1]))  # the parent's client now keeps connections open
    accepted = fs.accepted
    rows = np.array([30, 31])
    child = multiprocessing.get_context("fork").Process(
        target=_read_in_child, args=(reader, rows, ShardReader(root).gather(rows)), daemon=True)
    child.start()
    child.join(30)
    if child.exitcode is None:
        child.kill()
    assert child.exitcode == 0
    assert fs.accepted > accepted
    reader.close()


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("url", ["gs:///x", "gs://test-bucket/../x", "gs://test-bucket/a//b",
                                 "gs://test-bucket/./x", "gs://B!/x"])
def test_malformed_urls_are_refused_naming_the_url(url):
    expected = ("`root` must be gs://bucket/prefix with a valid bucket name and plain prefix parts "
                f"(no empty, '.' or '..' parts), got {url!r}")
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        parse_url(url)


def test_parse_url_normalises_the_prefix():
    assert parse_url("gs://test-bucket/a/b") == parse_url("gs://test-bucket/a/b/")
    assert parse_url("gs://test-bucket/a/b").url == "gs://test-bucket/a/b/"


def test_a_url_without_a_dataset_says_what_to_do(gcs_server, tmp_path):
    with pytest.raises(RemoteSourceError, match=r"^gs://test-bucket/missing/: no dataset\.json there; expected a "
                                                r"dataset pushed with `torchrl-ext push` .*: check the URL$"):
        ShardReader("gs://test-bucket/missing", cache_dir=tmp_path / "cache")


def test_a_negative_disk_cache_is_refused_before_any_request(tmp_path):
    with pytest.raises(ValueError, match=r"`disk_cache_bytes` must be .*got -1"):
        ShardReader("gs://test-bucket/data/ds", cache_dir=tmp_path / "cache", disk_cache_bytes=-1)
    assert not (tmp_path / "cache").exists()
