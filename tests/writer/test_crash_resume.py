"""A writer killed at any moment leaves a dataset that opens; resuming gives the uninterrupted result."""

from __future__ import annotations

import signal

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # a forked child per trial

from torchrl_ext import ShardedStorage, read_manifest
from torchrl_ext.synthetic import write_synthetic

from helpers import KILL_EXIT, read_events, run_killed
from torchrl_ext.testing.synthetic_reference import check_rows, reference_rows

EPISODES, LENGTH, SHARD_ROWS = 8, (2, 9), 5
ARGS = dict(episodes=EPISODES, length=LENGTH, obs_shape=(2, 3), shard_rows=SHARD_ROWS, events_every=3)

# The child (a fork) dies (os._exit, no cleanup) at the K-th fsync/rename/replace: every stage of a commit.
ENCODED = {"observation": "zstd"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = write_synthetic(tmp_path_factory.mktemp("ref") / "ds", **ARGS)
    return ShardedStorage(root)


@pytest.fixture(scope="module")
def encoded_reference(tmp_path_factory):
    root = write_synthetic(tmp_path_factory.mktemp("ref") / "ds", **ARGS, encodings=ENCODED)
    return ShardedStorage(root)


def _events(root):
    return sorted((row, step, value, name) for _, step, row, name, value in read_events(root))


def _assert_same(a: ShardedStorage, b: ShardedStorage):
    assert len(a) == len(b) and a.num_episodes == b.num_episodes
    assert (a[:] == b[:]).all()
    ta, tb = a.episode_table(), b.episode_table()
    assert [ta.metadata(e) for e in range(a.num_episodes)] == [tb.metadata(e) for e in range(b.num_episodes)]
    assert _events(a.root) == _events(b.root)


def _check_committed_prefix(root):
    storage = ShardedStorage(root)  # must open
    ref = reference_rows(storage.num_episodes, LENGTH)
    assert len(storage) == len(ref[0])
    if len(storage):
        check_rows(storage[np.arange(len(storage))], np.arange(len(storage)), ref)
    return storage


@pytest.mark.parametrize("kill_at", range(1, 160, 7))  # a full run makes 152 such calls
def test_killed_at_every_commit_stage_opens_and_resumes(tmp_path, reference, kill_at):
    root = tmp_path / "ds"
    assert run_killed(kill_at, write_synthetic, root, **ARGS) in (0, KILL_EXIT)
    if not (root / "dataset.json").exists():
        return  # killed before the empty dataset was first committed: nothing to open, nothing lost
    _check_committed_prefix(root)
    write_synthetic(root, **ARGS)
    _assert_same(ShardedStorage(root), reference)
    leftovers = [p.name for p in (root / "shards").iterdir()
                 if f"shards/{p.name}" not in {s.dir for s in read_manifest(root).shards}]
    assert leftovers == []


@pytest.mark.parametrize("kill_at", range(3, 160, 13))
def test_killed_with_encoded_columns_opens_and_resumes(tmp_path, encoded_reference, kill_at):
    root = tmp_path / "ds"
    assert run_killed(kill_at, write_synthetic, root, **ARGS, encodings=ENCODED) in (0, KILL_EXIT)
    if not (root / "dataset.json").exists():
        return
    _check_committed_prefix(root)
    write_synthetic(root, **ARGS, encodings=ENCODED)
    resumed = ShardedStorage(root)
    _assert_same(resumed, encoded_reference)
    assert resumed.manifest.column(("observation",)).encoding == "zstd"
    resumed.verify()


@pytest.mark.parametrize("kill_at", [int(k) for k in np.random.default_rng(7).integers(1, 152, 3)])
def test_sigkill_mid_write(tmp_path, reference, kill_at):
    """SIGKILL (no cleanup, no flush of Python buffers) at a seeded fsync/rename call."""
    root = tmp_path / "ds"
    assert run_killed(kill_at, write_synthetic, root, **ARGS, sigkill=True) == -signal.SIGKILL
    if (root / "dataset.json").exists():
        _check_committed_prefix(root)
    write_synthetic(root, **ARGS)
    _assert_same(ShardedStorage(root), reference)
