"""One rule for every dataset file the library opens: it resolves inside the root and is a regular file.

Each case replaces one file of a small dataset with a symlink to a copy of
its own bytes outside the root (so sizes and checksums match and only the rule
can refuse it), or with a FIFO; ``verify="off"`` checks no checksum.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hostile_files import NOT_REGULAR, OUTSIDE, call_within, plant_fifo, plant_symlink

from torchrl_ext import EventIndex, ShardedStorage
from torchrl_ext.encodings import Zstd
from torchrl_ext.format import (
    FormatError,
    dataset_dir,
    inside_root,
    open_inside,
    open_regular,
    read_manifest,
    resolved_root,
    verify_shard,
)
from torchrl_ext.synthetic import obs_value, write_synthetic

EPISODES, LENGTH = 2, 10
SYNTH = dict(episodes=EPISODES, length=LENGTH, obs_shape=(2,), events_every=3)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    base = tmp_path_factory.mktemp("clean")
    raw = write_synthetic(base / "raw", **SYNTH)
    EventIndex.build(raw)
    zstd = write_synthetic(base / "zstd", **SYNTH, encodings={"observation": Zstd(chunk_rows=4, dictionary=True)})
    return {"raw": raw, "zstd": zstd}


def _copy(clean, kind, tmp_path) -> Path:
    return Path(shutil.copytree(clean[kind], tmp_path / "ds", symlinks=True))


def _open(root):
    return ShardedStorage(root, verify="off")


def _verify(root):
    m = read_manifest(root)
    verify_shard(root, m, m.shards[0])


def _build(root):
    return EventIndex.build(root, save=False)


def _load(root):
    return EventIndex.load(root)


LINKED = "is a symbolic link, expected the file itself"

SYMLINK_CASES = [
    ("raw", "shards/000000/observation.memmap", _open, OUTSIDE),
    ("raw", "shards/000000/action.memmap", _open, OUTSIDE),
    ("raw", "shards/000000/final/observation.memmap", _open, OUTSIDE),
    ("raw", "shards/000000/final/row.memmap", _open, OUTSIDE),
    ("raw", "shards/000000/next/reward.memmap", _verify, OUTSIDE),
    ("zstd", "shards/000000/observation.chunks", _open, OUTSIDE),
    ("zstd", "shards/000000/observation.index", _open, OUTSIDE),
    ("zstd", "dicts/observation.zdict", _open, OUTSIDE),
    ("raw", "events/log-000000.npz", _build, OUTSIDE),
    ("raw", "events/index/meta.json", _load, LINKED),
    ("raw", "events/index/row.npy", _load, LINKED),
    ("raw", "dataset.json", _open, OUTSIDE),
]


@pytest.mark.parametrize("kind, rel, action, match", SYMLINK_CASES, ids=[c[1] for c in SYMLINK_CASES])
def test_file_linked_outside_the_root_is_refused(clean, tmp_path, kind, rel, action, match):
    root = _copy(clean, kind, tmp_path)
    outside = tmp_path / "elsewhere" / Path(rel).name
    before = plant_symlink(root / rel, outside)
    with pytest.raises(FormatError, match=match):
        action(root)
    assert outside.read_bytes() == before


FIFO_CASES = [
    ("raw", "events/log-000000.npz", _build),
    ("raw", "events/index/meta.json", _load),
    ("raw", "events/index/name_id.npy", _load),
    ("raw", "shards/000000/action.memmap", _verify),
    ("zstd", "shards/000000/observation.index", _open),
    ("zstd", "dicts/observation.zdict", _open),
]


@pytest.mark.parametrize("kind, rel, action", FIFO_CASES, ids=[c[1] for c in FIFO_CASES])
def test_fifo_in_the_dataset_is_refused_at_once(clean, tmp_path, kind, rel, action):
    root = _copy(clean, kind, tmp_path)
    fifo = plant_fifo(root / rel)
    err, _ = call_within(10.0, lambda: action(root), fifos=[fifo])
    assert isinstance(err, FormatError), err
    assert fifo.name in str(err) and "expected a regular file, found a FIFO (named pipe)" in str(err)


@pytest.mark.parametrize("kind", ["raw", "zstd"])
def test_clean_dataset_reads_the_written_values(clean, kind):
    storage = ShardedStorage(clean[kind], verify="open")
    td = storage[:]
    e = np.repeat(np.arange(EPISODES), LENGTH)
    t = np.tile(np.arange(LENGTH), EPISODES)
    assert np.array_equal(td["observation"].numpy(), np.repeat(obs_value(e, t)[:, None], 2, axis=1))
    nxt = np.repeat(obs_value(e, t + 1)[:, None], 2, axis=1)
    nxt[2 * LENGTH - 1] = 0  # odd episodes store no final observation
    assert np.array_equal(td["next", "observation"].numpy(), nxt)
    assert np.array_equal(td["action"].numpy(), (e + t) % 6)


def test_clean_saved_index_and_logs_agree(clean):
    built, loaded = EventIndex.build(clean["raw"], save=False), EventIndex.load(clean["raw"])
    assert loaded.counts() == built.counts() == {"episode_end": 2, "tick:0": 8}  # steps 0, 3, 6, 9
    assert np.asarray(loaded.row).tolist() == built.row.tolist() == [9, 19, 0, 3, 6, 9, 10, 13, 16, 19]


def test_incomplete_marker_is_never_echoed(tmp_path):
    secret = tmp_path / "environ"
    secret.write_bytes(b"AWS_SECRET_ACCESS_KEY=hunter2\0HOME=/root\0")
    root = tmp_path / "ds"
    root.mkdir()
    (root / ".incomplete").symlink_to(secret)
    match = r"no manifest but a \.incomplete file: an unfinished preprocess"
    with pytest.raises(FileNotFoundError, match=match) as info:
        ShardedStorage(root)
    assert "hunter2" not in str(info.value) and "AWS" not in str(info.value)
    assert secret.read_bytes() == b"AWS_SECRET_ACCESS_KEY=hunter2\0HOME=/root\0"


@pytest.mark.skipif(not os.path.exists("/proc/self/environ"), reason="needs /proc")
def test_incomplete_linked_to_the_process_environment_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHRL_EXT_TEST_SECRET", "s3cr3t-value")
    (tmp_path / ".incomplete").symlink_to("/proc/self/environ")
    with pytest.raises(FileNotFoundError, match=r"call preprocess\(\) again") as info:
        read_manifest(tmp_path)
    assert "s3cr3t-value" not in str(info.value)


def test_inside_root_names_the_real_path(tmp_path):
    root = tmp_path / "ds"
    (root / "shards").mkdir(parents=True)
    (root / "shards" / "inner").symlink_to(root / "shards")  # a link that stays inside is fine
    assert inside_root(root, root / "shards" / "inner" / "x") == root.resolve() / "shards" / "x"
    assert inside_root(resolved_root(root), root / "shards" / "x") == root.resolve() / "shards" / "x"
    (root / "out").symlink_to(tmp_path)
    for r in (root, resolved_root(root)):
        with pytest.raises(FormatError, match=rf"out/x: resolves to {tmp_path.resolve() / 'x'}, outside the dataset"):
            inside_root(r, root / "out" / "x")


def test_open_inside_reads_regular_files_and_refuses_fifos(tmp_path):
    (tmp_path / "a").write_bytes(b"abc")
    with open_inside(tmp_path, tmp_path / "a") as f:
        assert f.read() == b"abc"
    fifo = plant_fifo(tmp_path / "p")
    err, elapsed = call_within(1.0, lambda: open_regular(fifo), fifos=[fifo])
    assert isinstance(err, FormatError) and elapsed < 1.0
    assert str(err) == f"{fifo}: expected a regular file, found a FIFO (named pipe); replace it with the file itself"
    with pytest.raises(FormatError, match=NOT_REGULAR):
        open_inside(tmp_path, fifo)
    with pytest.raises(FileNotFoundError):
        open_inside(tmp_path, tmp_path / "missing")


def test_dataset_dir_refuses_a_dangling_link_before_creating_anything(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    (root / "events").symlink_to(tmp_path / "not-yet")
    with pytest.raises(FormatError, match=OUTSIDE):
        dataset_dir(root, "events")
    assert not (tmp_path / "not-yet").exists()
    assert dataset_dir(root, "dicts") == root / "dicts" and (root / "dicts").is_dir()
