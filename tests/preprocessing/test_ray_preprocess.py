"""``preprocess(..., executor="ray")`` on the session's Ray cluster: the same output as in this process."""

from __future__ import annotations

import json

import pytest
import torch

from torchrl_ext import ShardedStorage, preprocess
from torchrl_ext.synthetic import write_synthetic

pytestmark = pytest.mark.slow  # a Ray cluster, started once per test process


def halve(td):
    td["observation"] = td["observation"] // 2
    td["next", "observation"] = td["next", "observation"] // 2
    return td


def fail_on_big_episodes(td):
    if bool((td["episode"] >= 5).any()):
        raise ValueError("episode 5 is not welcome")
    return td


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("src") / "ds"
    return write_synthetic(root, episodes=9, length=(3, 11), obs_shape=(4, 4), shard_rows=13, events_every=2)


def test_ray_tasks_write_what_serial_writes(source, tmp_path, ray_cluster):
    serial = preprocess(source, halve, tmp_path / "serial", executor="serial", batch_rows=4, pbar=False)
    on_ray = preprocess(source, halve, tmp_path / "ray", executor="ray", batch_rows=4, pbar=False)
    a, b = serial[:], on_ray[:]
    assert set(a.keys(True, True)) == set(b.keys(True, True))
    for key in a.keys(True, True):
        assert torch.equal(a[key], b[key]), key
    assert torch.equal(b["observation"], ShardedStorage(source)[:]["observation"] // 2)
    shards = lambda d: [s["checksum"] for s in json.loads((d / "dataset.json").read_text())["shards"]]
    assert shards(tmp_path / "ray") == shards(tmp_path / "serial")
    assert ray_cluster.is_initialized()  # a cluster the caller started is left running


def test_a_failing_ray_task_names_its_shard_and_keeps_the_rest(source, tmp_path, ray_cluster):
    with pytest.raises(RuntimeError, match=r"preprocess task of shard \d{6} failed on Ray \(ValueError: episode 5 "
                                           r"is not welcome\); \d+ of \d+ shards finished and kept"):
        preprocess(source, fail_on_big_episodes, tmp_path / "out", executor="ray", batch_rows=4, pbar=False)
