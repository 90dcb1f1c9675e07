"""prefetch and download_dataset against the GCS emulator: exactly the shards a query reads are fetched."""

from __future__ import annotations

import os

import numpy as np
import pytest
from helpers import read_events, write_scored_dataset

from torchrl_ext import (
    EventIndex,
    ShardedStorage,
    download_dataset,
    prefetch,
)
from torchrl_ext.export import needed_bytes
from torchrl_ext.remote import RemoteSourceError
from torchrl_ext.remote.publish import push
from torchrl_ext.storages import EpisodeView

PREFIX = "data/ds/"
KEYS = ["observation", "action", ("next", "reward"), ("next", "done"), ("next", "observation")]


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    return write_scored_dataset(tmp_path_factory.mktemp("remote") / "ds")


@pytest.fixture
def url(gcs_server, local):
    push(local, f"gs://{gcs_server.bucket}/{PREFIX}", progress=False)
    return f"gs://{gcs_server.bucket}/{PREFIX}"


@pytest.fixture
def remote(url, tmp_path):
    storage = ShardedStorage(url, cache_dir=tmp_path / "cache")
    yield storage
    storage.reader.close()


def cached(storage) -> list[str]:
    return sorted(os.listdir(storage.root / "shards"))


def object_bytes(gcs_server, shards: list[int]) -> int:
    return sum(b.size for s in shards
               for b in gcs_server.client.list_blobs(gcs_server.bucket, prefix=f"{PREFIX}shards/{s:06d}/"))


def test_a_filter_in_one_shard_fetches_exactly_that_shard(gcs_server, remote, local):
    result = prefetch(remote, where="Score BETWEEN 20 AND 30", progress=False)
    assert (result.shards, result.fetched, result.rows) == ((1,), (1,), 20)
    assert cached(remote) == ["000001"]
    assert result.bytes_fetched == object_bytes(gcs_server, [1])
    assert result.shard_bytes == result.bytes_needed == remote.manifest.shards[1].bytes and result.ratio == 1.0
    # reading the prefetched episodes (the last ends the shard) fetches nothing more
    got, want = remote.get(np.arange(20, 40)), ShardedStorage(local).get(np.arange(20, 40))
    for key in KEYS:
        assert np.array_equal(got[key].numpy(), want[key].numpy()), key
    assert cached(remote) == ["000001"] and remote.reader.remote.bytes_fetched() == result.bytes_fetched


def test_event_windows_fetch_exactly_the_shards_of_their_rows(gcs_server, remote):
    result = prefetch(remote, event_regex="kill_entity:.*", win_len=4, progress=False)
    rows = [20, 21, 22, 23, 52, 53, 54, 55]  # episode 2, steps 0..3 (shifted); episode 5, steps 2..5
    assert (result.shards, result.fetched, result.rows) == ((1, 2), (1, 2), 8)
    assert cached(remote) == ["000001", "000002"]
    assert result.bytes_fetched == object_bytes(gcs_server, [1, 2])
    assert result.bytes_needed == needed_bytes(remote.manifest, remote.offsets, np.array(rows))
    assert result.ratio == pytest.approx(2 * remote.manifest.shards[1].bytes / result.bytes_needed)


def test_filter_and_windows_together(remote):
    result = prefetch(remote, "Score >= 40", "kill_entity:.*", win_len=4, bias=1, progress=False)
    assert (result.shards, result.rows) == ((2,), 4) and cached(remote) == ["000002"]


def test_a_second_prefetch_fetches_nothing(remote):
    first = prefetch(remote, where="Score >= 60", progress=False)
    again = prefetch(remote, where="Score >= 60", progress=False)
    assert first.fetched == (3,) and first.bytes_fetched > 0
    assert (again.shards, again.fetched, again.bytes_fetched) == ((3,), (), 0)


def test_a_view_prefetches_its_episodes(remote):
    result = prefetch(EpisodeView(remote, Score__ge=70), progress=False)
    assert (result.shards, result.rows) == ((3,), 10) and cached(remote) == ["000003"]


def test_a_bad_filter_fetches_nothing(remote):
    with pytest.raises(ValueError, match=r"^episode filter 'Nope >= 1' is not valid SQL .*no such column: Nope$"):
        prefetch(remote, where="Nope >= 1", progress=False)
    assert cached(remote) == []


def test_a_local_dataset_has_every_shard(local):
    result = prefetch(ShardedStorage(local), where="Score >= 60", progress=False)
    assert (result.shards, result.fetched, result.bytes_fetched, result.rows) == ((3,), (), 0, 20)


def test_download_dataset_writes_the_episodes_with_windows(gcs_server, url, local, tmp_path):
    result = download_dataset(url, tmp_path / "out", event_regex="kill_entity:.*", win_len=4,
                              cache_dir=tmp_path / "cache", progress=False)
    assert result.root == tmp_path / "out" and result.episodes.tolist() == [2, 5]
    assert result.prefetch.fetched == (1, 2) and result.prefetch.bytes_fetched == object_bytes(gcs_server, [1, 2])
    out, want = ShardedStorage(result.root), EpisodeView(local, episodes=[2, 5])
    assert out.num_episodes == 2 and len(out) == 20
    for key in KEYS:
        assert np.array_equal(out.get(slice(None))[key].numpy(), want.get(slice(None))[key].numpy()), key
    assert out.episode_table().values(["Score"]) == [(20,), (50,)]
    assert [(e, s, n, v) for e, s, _, n, v in read_events(result.root)] == [
        (0, 1, "jump", 2.0), (0, 3, "kill_entity:skeleton", 2.0),
        (1, 1, "jump", 5.0), (1, 6, "kill_entity:zombie", 5.0)]
    assert EventIndex.open(result.root, build_missing="error").counts() == {
        "jump": 2, "kill_entity:skeleton": 1, "kill_entity:zombie": 1}


def test_download_dataset_refuses_a_query_selecting_nothing(url, tmp_path):
    with pytest.raises(ValueError, match=r"^`where` 'Score > 1000' selects no episode of gs://.* \(8 episodes\); "
                                         r"widen the filter$"):
        download_dataset(url, tmp_path / "out", "Score > 1000", cache_dir=tmp_path / "cache", progress=False)
    assert not (tmp_path / "out").exists()


def test_download_dataset_of_a_url_without_a_dataset(gcs_server, tmp_path):
    with pytest.raises(RemoteSourceError, match=r"gs://test-bucket/nothing/: no dataset\.json there; .*check the URL$"):
        download_dataset("gs://test-bucket/nothing", tmp_path / "out", cache_dir=tmp_path / "cache", progress=False)
    assert not (tmp_path / "out").exists()
