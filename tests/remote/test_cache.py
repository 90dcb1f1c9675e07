"""The local cache of a remote dataset: its budget, LRU eviction, live shards kept, one download per shard
across processes, a killed fetch, and a dataset pushed again."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import signal
import time

import numpy as np
import pytest
from helpers import run_killed

from torchrl_ext.format import read_manifest
from torchrl_ext.remote.cache import ShardCache
from torchrl_ext.remote.dataset import shard_names
from torchrl_ext.remote.publish import dataset_files, push
from torchrl_ext.storages import ShardReader
from torchrl_ext.synthetic import write_synthetic

FORK = multiprocessing.get_context("fork")
JOIN = 30  # seconds a child may take; each finishes in well under one


def _start(target, *args) -> multiprocessing.Process:
    """A forked child running ``target(*args)`` (daemonic: it cannot outlive the test run)."""
    child = FORK.Process(target=target, args=args, daemon=True)
    child.start()
    return child


def _join(children: list) -> list[int | None]:
    """Waits for the children and returns their exit codes; one still running is killed (its code is None)."""
    codes = []
    for child in children:
        child.join(JOIN)
        codes.append(child.exitcode)
        if child.exitcode is None:
            child.kill()
            child.join()
    return codes


def _rows(reader: ShardReader, s: int) -> np.ndarray:
    """The rows of shard ``s`` but its last (whose next row lies in the following shard)."""
    return np.arange(int(reader.offsets[s]), int(reader.offsets[s + 1]) - 1)


def _read(url_or_root, s: int, local: ShardReader, same_rows, **kwargs) -> None:
    """Reads shard ``s`` with a fresh reader, checks the values, closes the reader."""
    reader = ShardReader(url_or_root, **kwargs)
    try:
        rows = _rows(local, s)
        same_rows(local.gather(rows), reader.gather(rows))
    finally:
        reader.close()


def test_fresh_readers_one_after_another_keep_the_budget(publish, tmp_path, same_rows, present):
    pub = publish()
    local = ShardReader(pub.local)
    budget = {"cache_dir": tmp_path / "cache", "disk_cache_bytes": 2 * pub.shard_bytes()}
    kept = []
    for s in range(local.num_shards):
        _read(pub.url, s, local, same_rows, **budget)
        kept.append(present(ShardReader(pub.url, **budget).root))
    assert kept == [["000000"], ["000000", "000001"], ["000001", "000002"]]  # the oldest went first


def test_the_least_recently_used_shard_goes_first(publish, tmp_path, same_rows, present):
    pub = publish()
    local = ShardReader(pub.local)
    budget = {"cache_dir": tmp_path / "cache", "disk_cache_bytes": 2 * pub.shard_bytes()}
    for s in (0, 1, 0, 2):  # shard 0 read again after shard 1: shard 1 is the least recently used
        _read(pub.url, s, local, same_rows, **budget)
    assert present(ShardReader(pub.url, **budget).root) == ["000000", "000002"]


def test_a_shard_a_live_reader_holds_is_never_evicted(publish, tmp_path, same_rows, present):
    pub = publish()
    local = ShardReader(pub.local)
    budget = {"cache_dir": tmp_path / "cache", "disk_cache_bytes": pub.shard_bytes()}  # one shard
    holder = ShardReader(pub.url, **budget)
    rows = _rows(local, 0)
    expected = local.gather(rows)
    same_rows(expected, holder.gather(rows))
    for s in (1, 2):
        _read(pub.url, s, local, same_rows, **budget)
    assert present(holder.root) == ["000000", "000002"]  # shard 1 evicted for shard 2, shard 0 kept
    same_rows(expected, holder.gather(rows))
    holder.close()
    _read(pub.url, 1, local, same_rows, **budget)  # once released, shard 0 may go
    assert present(holder.root) == ["000001"]


def _hold_shard_0(root, ready, go, expected: dict) -> None:
    reader = ShardReader(root)
    rows = np.arange(len(next(iter(expected.values()))))
    got = reader.gather(rows)
    ready.set()
    go.wait(JOIN)
    again = reader.gather(rows)  # still there, still the same values
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value)
        np.testing.assert_array_equal(again[key], value)


def test_a_shard_another_process_holds_is_never_evicted(publish, tmp_path, same_rows, present):
    pub = publish()
    local = ShardReader(pub.local)
    budget = {"cache_dir": tmp_path / "cache", "disk_cache_bytes": pub.shard_bytes()}
    root = ShardReader(pub.url, **budget).root
    ready, go = FORK.Event(), FORK.Event()
    child = _start(_hold_shard_0, root, ready, go, local.gather(_rows(local, 0)))
    try:
        assert ready.wait(JOIN)
        for s in (1, 2):
            _read(pub.url, s, local, same_rows, **budget)
        assert present(root) == ["000000", "000002"]
    finally:
        go.set()
        exits = _join([child])
    assert exits == [0]


def _read_shard_1(root, barrier, expected: dict, first: int) -> None:
    barrier.wait(JOIN)
    got = ShardReader(root).gather(np.arange(first, first + len(expected[("step",)])))
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value)


def test_two_processes_wanting_a_missing_shard_download_it_once(publish, downloads, tmp_path):
    pub = publish()
    local = ShardReader(pub.local)
    root = ShardReader(pub.url, cache_dir=tmp_path / "cache").root
    manifest = read_manifest(pub.local)
    rows = _rows(local, 1)
    barrier = FORK.Barrier(3)
    children = [_start(_read_shard_1, root, barrier, local.gather(rows), int(rows[0])) for _ in range(2)]
    downloads.clear()
    try:  # locked after the forks: a child inheriting the descriptor would hold the lock too
        lock = os.open(ShardCache(root, None).fetch_lock_path(manifest.shards[1]), os.O_RDWR | os.O_CREAT)
        fcntl.flock(lock, fcntl.LOCK_EX)  # both children find the shard missing and wait for its fetch lock
        barrier.wait(JOIN)
        time.sleep(0.2)  # lets both reach the lock; the count below holds whoever fetches first
        os.close(lock)
    finally:
        exits = _join(children)
    assert exits == [0, 0]
    assert dict(downloads) == {name: 1 for name in shard_names(manifest, manifest.shards[1])}


def _staged(root) -> list[str]:
    return sorted(p.name for p in (root / ".cache" / "staging").iterdir())


@pytest.mark.parametrize("stage", ["first object", "middle object", "rename into shards/"])
def test_a_fetch_killed_leaves_no_partial_shard(publish, tmp_path, same_rows, present, stage):
    pub = publish()
    local = ShardReader(pub.local)
    root = ShardReader(pub.url, cache_dir=tmp_path / "cache").root
    files = len(shard_names(read_manifest(pub.local), read_manifest(pub.local).shards[1]))
    # each object: fsync then replace of its .part; then one rename of the verified shard into shards/
    kill_at = {"first object": 1, "middle object": files, "rename into shards/": 2 * files + 1}[stage]
    rows = _rows(local, 1)
    code = run_killed(kill_at, lambda: ShardReader(root).gather(rows), sigkill=True)
    assert code == -signal.SIGKILL
    assert present(root) == [] and len(_staged(root)) == 1  # the dead fetch's staging directory
    reader = ShardReader(pub.url, cache_dir=tmp_path / "cache")  # opening cleans the staging area
    assert _staged(root) == []
    same_rows(local.gather(rows), reader.gather(rows))
    assert present(root) == ["000001"]
    reader.close()


def _fetch_shard_1(root, rows) -> None:
    ShardReader(root).gather(rows)


def test_a_fetch_killed_while_the_server_stalls_leaves_no_partial_shard(fault_server, local_datasets, tmp_path,
                                                                        same_rows, present):
    local_root = local_datasets["raw"]
    objects = {"data/ds/" + rel: (local_root / rel).read_bytes() for rel in dataset_files(local_root)}
    fs = fault_server(objects)
    url, cache = "gs://test-bucket/data/ds", tmp_path / "cache"
    root = ShardReader(url, cache_dir=cache).root
    fs.media, fs.limit = "stall", 40  # objects of up to 40 bytes arrive whole, every larger one stops there
    local = ShardReader(local_root)
    rows = _rows(local, 1)
    child = _start(_fetch_shard_1, root, rows)
    try:
        end = time.monotonic() + JOIN
        while not any(p.is_file() for p in (root / ".cache" / "staging").rglob("*")):  # the fetch is under way
            assert child.is_alive() and time.monotonic() < end, f"no byte arrived (child exit {child.exitcode})"
            time.sleep(0.01)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        exits = _join([child])
    assert exits == [-signal.SIGKILL]
    assert present(root) == [] and len(_staged(root)) == 1
    fs.media = "ok"
    reader = ShardReader(url, cache_dir=cache)
    assert _staged(root) == []
    same_rows(local.gather(rows), reader.gather(rows))
    reader.close()


def test_a_dataset_pushed_again_drops_the_shards_that_changed(publish, downloads, tmp_path, same_rows, present):
    pub = publish()
    cache = tmp_path / "cache"
    first = ShardReader(pub.url, cache_dir=cache)
    first.gather(np.arange(first.num_rows))
    first.close()
    # one more episode: shards 0 and 1 as before, shard 2 holds more rows, shard 3 is new
    root = write_synthetic(tmp_path / "ds", episodes=6, length=(3, 17), obs_shape=(3,), shard_rows=24,
                           events_every=4)
    old, new = read_manifest(pub.local), read_manifest(root)
    assert [s.checksum for s in new.shards[:2]] == [s.checksum for s in old.shards[:2]]
    assert new.shards[2].checksum != old.shards[2].checksum and len(new.shards) == 4
    push(root, pub.url, progress=False)
    downloads.clear()
    reader = ShardReader(pub.url, cache_dir=cache)
    assert present(reader.root) == ["000000", "000001"]  # unchanged shards kept, the changed one dropped
    rows = np.arange(reader.num_rows)
    same_rows(ShardReader(root).gather(rows), reader.gather(rows))
    fetched = {n for n in downloads if n.startswith("shards/")}
    assert fetched == {n for s in new.shards[2:] for n in shard_names(new, s)}
    reader.close()
