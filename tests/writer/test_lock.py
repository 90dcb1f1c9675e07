"""The writer lock: one holder, and nothing but a lock file of its own ever opened, truncated or written.

A ``.writer.lock`` planted as a symlink, hard link, FIFO or directory is
refused by every entry point that takes the lock, and the file it points at
keeps its bytes.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from hostile_files import call_within

from torchrl_ext import ShardedStorage, ShardWriter, add_episode_metadata, preprocess
from torchrl_ext.format import FormatError
from torchrl_ext.synthetic import make_episode, obs_value, write_synthetic
from torchrl_ext.writer import LOCK_NAME, lock_dataset, unlock_dataset
from torchrl_ext.writer.lock import lock_owner

SYNTH = dict(episodes=2, length=10, obs_shape=(2,))
PRECIOUS = b"precious bytes that are not a lock\n"


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("clean") / "ds", **SYNTH)


def _symlink(lock: Path, outside: Path) -> None:
    lock.symlink_to(outside)


def _dangling(lock: Path, outside: Path) -> None:
    outside.unlink()
    lock.symlink_to(outside)


def _hardlink(lock: Path, outside: Path) -> None:
    os.link(outside, lock)


def _fifo(lock: Path, outside: Path) -> None:
    os.mkfifo(lock)


def _directory(lock: Path, outside: Path) -> None:
    lock.mkdir()


PLANTS = {
    "symlink": (_symlink, r"the writer lock is a symbolic link \(to '.*outside'\), not the regular file"),
    "dangling": (_dangling, r"the writer lock is a symbolic link \(to '.*outside'\)"),
    "hardlink": (_hardlink, r"the writer lock is a hard link shared with another file \(2 links\)"),
    "fifo": (_fifo, r"the writer lock is a FIFO, not the regular file"),
    "directory": (_directory, r"the writer lock is a directory, not the regular file"),
}


def _open(root: Path, tmp_path: Path) -> None:
    ShardWriter.open(root).close()


def _add_metadata(root: Path, tmp_path: Path) -> None:
    add_episode_metadata(root, "first_obs", lambda ep: int(ep["observation"][0, 0]), progress=False)


def _overwrite(root: Path, tmp_path: Path) -> None:
    ShardWriter.create(root, overwrite=True).close()


def _preprocess_into(root: Path, tmp_path: Path) -> None:
    dest = root.parent / "dest"
    dest.mkdir(exist_ok=True)
    os.rename(root / LOCK_NAME, dest / LOCK_NAME)  # the plant moves to the destination
    preprocess(root, lambda td: td, dest, executor="thread", num_workers=1, pbar=False)


ENTRIES = {"ShardWriter.open": _open, "add_episode_metadata": _add_metadata,
           "ShardWriter.create(overwrite=True)": _overwrite, "preprocess(dest=...)": _preprocess_into}


@pytest.mark.parametrize("entry", list(ENTRIES))
@pytest.mark.parametrize("plant", list(PLANTS))
def test_planted_lock_is_refused_and_its_target_unchanged(clean, tmp_path, plant, entry):
    root = Path(shutil.copytree(clean, tmp_path / "ds"))
    outside = tmp_path / "outside"
    outside.write_bytes(PRECIOUS)
    make, match = PLANTS[plant]
    make(root / LOCK_NAME, outside)
    err, _ = call_within(30.0, lambda: ENTRIES[entry](root, tmp_path))
    assert isinstance(err, FormatError), err
    assert re.search(match, str(err)), err
    assert str(err).endswith(f"nothing was written through it; remove it (`rm {str(err).split(': ')[0]}`) and retry")
    if plant == "dangling":
        assert not outside.exists()
    else:
        assert outside.read_bytes() == PRECIOUS
    assert np.array_equal(ShardedStorage(root)[:]["observation"][:, 0].numpy(),
                          obs_value(np.repeat([0, 1], 10), np.tile(np.arange(10), 2)))


def test_stale_lock_file_of_a_dead_owner_is_reused(clean, tmp_path):
    root = Path(shutil.copytree(clean, tmp_path / "ds"))
    (root / LOCK_NAME).write_bytes(b'{"pid": 999999999, "start": "1"}')
    with ShardWriter.open(root) as w:
        assert lock_owner(root)["pid"] == os.getpid()
        w.add_episode(make_episode(2, 4, (2,)))
    assert not (root / LOCK_NAME).exists()
    obs = ShardedStorage(root)[:]["observation"][:, 0].numpy()
    steps = np.r_[np.arange(10), np.arange(10), np.arange(4)]
    assert np.array_equal(obs, obs_value(np.repeat([0, 1, 2], [10, 10, 4]), steps))


def test_second_holder_is_told_who_holds_the_lock(tmp_path):
    fd = lock_dataset(tmp_path, "first")
    try:
        with pytest.raises(RuntimeError, match=rf"{tmp_path}: second \(process {os.getpid()} holds it\)"):
            lock_dataset(tmp_path, "second")
    finally:
        unlock_dataset(tmp_path, fd)
    assert not (tmp_path / LOCK_NAME).exists()
    unlock_dataset(tmp_path, lock_dataset(tmp_path, "again"))  # free again


def test_lock_owner_does_not_follow_a_link(tmp_path):
    (tmp_path / "elsewhere.json").write_text('{"pid": 1, "start": "x"}')
    (tmp_path / LOCK_NAME).symlink_to(tmp_path / "elsewhere.json")
    assert lock_owner(tmp_path) is None
