"""Every API that takes a dataset root reads a pushed dataset's URL as it reads the local directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_same_datasets

from torchrl_ext import ShardedStorage, preprocess, read_manifest
from torchrl_ext.events import EventIndex, EventWindowDataset, WindowQuery
from torchrl_ext.export import episodes_of, export_episodes
from torchrl_ext.remote.publish import push
from torchrl_ext.remote.roots import dataset_root
from torchrl_ext.samplers import EventSliceSampler
from torchrl_ext.storages import EpisodeView
from torchrl_ext.synthetic import write_synthetic

URL = "gs://test-bucket/runs/ds"
FIELDS = ("name_id", "episode", "step", "row", "value")


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> Path:
    root = write_synthetic(tmp_path_factory.mktemp("src") / "ds", episodes=6, length=(9, 17), obs_shape=(3, 3),
                           shard_rows=20, events_every=4)
    EventIndex.build(root, columns={"reward": ("next", "reward")})
    return root


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCHRL_EXT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def pushed(gcs_server, local, cache) -> str:
    push(local, URL, progress=False)
    return URL


def to_float(td):
    td["observation"] = td["observation"].float() / 255
    td["next", "observation"] = td["next", "observation"].float() / 255
    return td


def _same_index(a: EventIndex, b: EventIndex) -> None:
    assert a.names.tolist() == b.names.tolist() and a.derived == b.derived
    for k in FIELDS:
        assert np.array_equal(np.asarray(getattr(a, k)), np.asarray(getattr(b, k))), k


# ---------------------------------------------------------------- events
@pytest.mark.parametrize("opener", [EventIndex.open, EventIndex.load])
def test_event_index_of_a_url_is_the_pushed_index(pushed, local, cache, opener, recwarn):
    remote = opener(pushed)
    _same_index(remote, EventIndex.load(local))
    positive = int((ShardedStorage(local)[:]["next", "reward"] > 0).sum())  # all but episode 0's first step
    assert remote.counts()["reward:+1"] == positive == 83 and not recwarn.list  # the saved index, not rebuilt


def test_event_index_built_in_memory_from_a_url_equals_the_local_build(pushed, local):
    remote = EventIndex.build(pushed, columns={"reward": ("next", "reward")}, save=False)
    _same_index(remote, EventIndex.build(local, columns={"reward": ("next", "reward")}, save=False))


@pytest.mark.parametrize("call", [
    lambda url: EventIndex.build(url),
    lambda url: EventIndex.build(ShardedStorage(url).root),
    lambda url: EventIndex.rebuild(url),
    lambda url: EventIndex.load(url).save(url),
])
def test_saving_an_event_index_into_a_url_is_refused(pushed, call):
    with pytest.raises(ValueError, match=r"`root` gs://test-bucket/runs/ds/ is a remote dataset, and an event "
                                         r"index is saved only into a dataset directory; build it where the "
                                         r"dataset is written \(torchrl-ext events ROOT --build\)"):
        call(pushed)


def test_missing_index_of_a_url_says_to_build_it_where_the_dataset_is_written(gcs_server, local, cache,
                                                                             tmp_path):
    bare = write_synthetic(tmp_path / "bare", episodes=2, length=5, obs_shape=(1,), events_every=2)
    push(bare, "gs://test-bucket/bare", progress=False)
    with pytest.raises(FileNotFoundError, match=r"event index of gs://test-bucket/bare/ is missing; build it "
                                                r"where the dataset is written \(torchrl-ext events ROOT "
                                                r"--build\) and push it again"):
        EventIndex.open("gs://test-bucket/bare", build_missing="error")
    with pytest.warns(UserWarning, match="gs://test-bucket/bare/ is missing: built it in memory"):
        index = EventIndex.open("gs://test-bucket/bare")
    _same_index(index, EventIndex.build(bare, save=False))


def test_event_window_dataset_items_of_a_url_equal_the_local_items(pushed, local):
    query = WindowQuery(event_regex="tick:.*", win_len=4, bias=1)
    remote, here = EventWindowDataset(pushed, query), EventWindowDataset(local, query)
    ticks = sum(n for name, n in EventIndex.load(local).counts().items() if name.startswith("tick:"))
    assert len(remote) == len(here) == ticks
    for i in (0, 7, len(here) - 1):
        a, b = remote[i], here[i]
        assert (a["text"], a["episode"], a["event_step"]) == (b["text"], b["episode"], b["event_step"])
        for key in ("observation", "action", "timestamp", "mask", "step"):
            assert torch.equal(a[key], b[key]), key
        assert torch.equal(a["next"]["observation"], b["next"]["observation"])


def test_event_slice_sampler_of_a_url_selects_the_local_windows(pushed, local):
    remote, here = (EventSliceSampler(r, event_regex="episode_end", win_len=3) for r in (pushed, local))
    assert len(remote) == len(here) == 6
    assert remote.windows.first_row.tolist() == here.windows.first_row.tolist()
    assert remote.windows.episode.tolist() == list(range(6))


# ---------------------------------------------------------------- storages and exporters
def test_episode_view_of_a_url_holds_the_local_rows(pushed, local):
    remote, here = EpisodeView(pushed, game="pong"), EpisodeView(local, game="pong")
    assert remote.episode_ids.tolist() == here.episode_ids.tolist() == [0, 2, 4]
    assert len(remote) == len(here) and (remote[:] == here[:]).all()
    assert remote.base.reader.is_remote and not here.base.reader.is_remote


def test_exporting_a_url_writes_the_local_export(pushed, local, tmp_path):
    storage, ids = episodes_of(pushed)
    assert ids.tolist() == list(range(6)) and storage.reader.is_remote
    export_episodes(EpisodeView(pushed, score__ge=2), tmp_path / "remote", progress=False)
    export_episodes(EpisodeView(local, score__ge=2), tmp_path / "local", progress=False)
    assert_same_datasets(tmp_path / "remote", tmp_path / "local")
    assert ShardedStorage(tmp_path / "remote").num_episodes == 3  # scores 2, 3, 4


# ---------------------------------------------------------------- preprocess
def test_preprocess_into_a_url_pushes_the_dataset_and_removes_its_staging(gcs_server, local, cache, tmp_path):
    out = preprocess(local, to_float, "gs://test-bucket/float", executor="serial", num_workers=0, pbar=False)
    expected = preprocess(local, to_float, tmp_path / "float", executor="serial", num_workers=0, pbar=False)
    assert out.reader.is_remote
    assert_same_datasets("gs://test-bucket/float", tmp_path / "float")
    assert out[:]["observation"].dtype == torch.float32 and len(out) == len(expected)
    assert list((cache / "push").iterdir()) == []
    objects = {b.name for b in gcs_server.client.list_blobs(gcs_server.bucket, prefix="float/")}
    assert "float/dataset.json" in objects and not any(".preprocess" in n or ".lock" in n for n in objects)


def test_preprocess_from_a_url_equals_preprocess_from_the_local_dataset(pushed, local, tmp_path):
    a = preprocess(pushed, to_float, tmp_path / "a", executor="serial", num_workers=0, pbar=False)
    preprocess(local, to_float, tmp_path / "b", executor="serial", num_workers=0, pbar=False)
    assert_same_datasets(tmp_path / "a", tmp_path / "b")
    assert read_manifest(a.root).source["source"] == "gs://test-bucket/runs/ds/"


def test_preprocess_with_where_into_a_url(pushed, local, tmp_path):
    preprocess(pushed, to_float, "gs://test-bucket/pong", where="game = ?", params=("pong",), pbar=False)
    preprocess(local, to_float, tmp_path / "pong", where="game = ?", params=("pong",), pbar=False)
    assert_same_datasets("gs://test-bucket/pong", tmp_path / "pong")


@pytest.mark.parametrize("dest", [URL, URL + "/", URL + "/smaller"])
def test_preprocess_into_its_own_url_is_refused(pushed, dest):
    with pytest.raises(ValueError, match=r"`dest` gs://test-bucket/runs/ds/.* is the source "
                                         r"gs://test-bucket/runs/ds/ or lies under it; choose another prefix"):
        preprocess(pushed, to_float, dest, executor="serial", num_workers=0, pbar=False)


def test_preprocess_into_a_bad_url_is_refused(local):
    with pytest.raises(ValueError, match=r"`dest` must be gs://bucket/prefix with a valid bucket name"):
        preprocess(local, to_float, "gs://B/x", executor="serial", num_workers=0, pbar=False)


# ---------------------------------------------------------------- local paths
def test_relative_and_home_paths_still_name_local_directories(local, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(local.parent))
    monkeypatch.chdir(local.parent)
    assert dataset_root("~/ds") == local and dataset_root("ds") == Path("ds")
    for root in ("~/ds", "ds"):
        _same_index(EventIndex.open(root), EventIndex.load(local))
        assert len(EventWindowDataset(root, event_regex="episode_end", win_len=2)) == 6
        assert EpisodeView(root, game="breakout").episode_ids.tolist() == [1, 3, 5]
