"""loader_context: DataLoader workers started by fork or from the preloaded fork server read what one process reads."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import threading

import pytest
import torch
from torch.utils.data import DataLoader

from torchrl_ext.datasets import loader_context
from torchrl_ext.encodings import Zstd
from torchrl_ext.events import EventIndex, EventWindowDataset, batchify
from torchrl_ext.storages import RowDataset, ShardedStorage, collate_rows
from torchrl_ext.synthetic import write_synthetic

# one fork server per test process: the tests that start one run on one xdist worker
forkserver_group = pytest.mark.xdist_group("loader_forkserver")

PROCESS_CLASS = {"fork": "ForkProcess", "forkserver": "ForkServerProcess"}


@pytest.fixture
def root(tmp_path):
    """Zstd frames (decoded in the workers, each with its own pool and cache) and events, over 3 shards."""
    root = write_synthetic(tmp_path / "ds", episodes=4, length=(10, 20), obs_shape=(6, 6), shard_rows=24,
                           events_every=5, encodings={"observation": Zstd(chunk_rows=4)})
    EventIndex.build(root)
    return root


def _load(loader: DataLoader) -> tuple[list, set[str]]:
    """Every batch, and the classes of the worker processes that made them."""
    it = iter(loader)
    batches = [next(it)]
    started = {type(p).__name__ for p in multiprocessing.active_children()}
    batches.extend(it)
    return batches, started


def _rows(root, method: str) -> tuple[list, set[str], object]:
    loader = DataLoader(RowDataset(root), batch_size=8, num_workers=2, collate_fn=collate_rows,
                        multiprocessing_context=loader_context(method))
    batches, started = _load(loader)
    return batches, started, ShardedStorage(root)[:]


def _windows(root, method: str) -> tuple[list, set[str], object]:
    ds = EventWindowDataset(root, event_regex="tick:.*", win_len=6)
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=batchify,
                        multiprocessing_context=loader_context(method))
    batches, started = _load(loader)
    return batches, started, batchify(ds.__getitems__(list(range(len(ds)))))


def _assert_batches_equal(batches: list, whole, by_rows: bool) -> None:
    if by_rows:
        got = torch.cat(batches)
        assert set(got.keys(True, True)) == set(whole.keys(True, True))
        for key in whole.keys(True, True):
            assert torch.equal(got[key], whole[key]), key
        return
    for key in ("observation", "mask", "timestamp", "episode", "event_step"):
        assert torch.equal(torch.cat([b[key] for b in batches]), whole[key]), key
    assert [t for b in batches for t in b["text"]] == whole["text"]


@forkserver_group
@pytest.mark.parametrize("method", [
    "fork",
    pytest.param("forkserver", marks=pytest.mark.slow),  # the fork server's start imports torch
])
@pytest.mark.parametrize("read", [_rows, _windows], ids=["RowDataset", "EventWindowDataset"])
def test_two_workers_read_what_one_process_reads(root, method, read):
    batches, started, whole = read(root, method)
    assert started == {PROCESS_CLASS[method]}
    _assert_batches_equal(batches, whole, by_rows=read is _rows)


@forkserver_group
@pytest.mark.slow  # the fork server's start imports torch
def test_auto_starts_workers_from_the_fork_server_while_another_thread_runs(root):
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, name="waits")
    other.start()
    try:
        batches, started, whole = _rows(root, "auto")
    finally:
        stop.set()
        other.join()
    assert started == {"ForkServerProcess"}
    _assert_batches_equal(batches, whole, by_rows=True)


AUTO_SCRIPT = """
import multiprocessing, sys
import torch
from torch.utils.data import DataLoader
from torchrl_ext.datasets import loader_context
from torchrl_ext.storages import RowDataset, ShardedStorage, collate_rows

if __name__ == "__main__":
    loader = DataLoader(RowDataset(sys.argv[1]), batch_size=8, num_workers=2, collate_fn=collate_rows,
                        multiprocessing_context=loader_context())
    it = iter(loader)
    batches = [next(it)]
    started = sorted({type(p).__name__ for p in multiprocessing.active_children()})
    batches.extend(it)
    whole = ShardedStorage(sys.argv[1])[:]
    same = all(torch.equal(torch.cat(batches)[k], whole[k]) for k in whole.keys(True, True))
    print(started, same, len(whole))
"""


@pytest.mark.slow  # a fresh interpreter: the test process itself runs other threads
def test_auto_forks_a_process_that_runs_only_its_main_thread(root):
    proc = subprocess.run([sys.executable, "-c", AUTO_SCRIPT, str(root)], capture_output=True, text=True,
                          timeout=200, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[-2] == f"['ForkProcess'] True {len(ShardedStorage(root))}"


@pytest.mark.parametrize("kwargs, error, match", [
    ({"method": "spawn"}, ValueError, r"`method` must be one of \('auto', 'fork', 'forkserver'\), got 'spawn'"),
    ({"preload": "torch"}, TypeError, r"`preload` must be a list of module names, e\.g\. \[.*\], got 'torch'"),
    ({"preload": ["torch", 3]}, TypeError, r"`preload` must be a list of module names"),
])
def test_bad_arguments_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        loader_context(**kwargs)
