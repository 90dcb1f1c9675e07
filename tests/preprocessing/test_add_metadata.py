"""Metadata added after the fact: committed by the manifest, covered by verify, resumable."""

from __future__ import annotations

import pytest

from torchrl_ext import FormatError, ShardedStorage, ShardWriter, add_episode_metadata
from torchrl_ext.format import read_manifest
from torchrl_ext.synthetic import make_episode, write_synthetic


def test_added_metadata_is_committed_and_verifies(tmp_path):
    root = write_synthetic(tmp_path / "ds", episodes=4, length=(3, 7), obs_shape=(2,))
    old = read_manifest(root).episodes
    add_episode_metadata(root, "length_x2", lambda ep: 2 * ep.batch_size[0], progress=False)
    m = read_manifest(root)
    assert m.episodes != old and not (root / old).exists() and (root / m.episodes).is_file()
    storage = ShardedStorage(root)
    storage.verify()
    first, length = storage.episode_bounds
    table = storage.episode_table()
    assert [table.metadata(e)["length_x2"] for e in range(4)] == (2 * length).tolist()
    with ShardWriter.open(root) as w:  # appending writes into the committed table
        w.add_episode(make_episode(4, 3, (2,)), metadata={"game": "pong", "score": 1.0, "length_x2": 6})
    ShardedStorage(root).verify()


def test_edited_episode_table_fails_verify(tmp_path):
    import sqlite3

    root = write_synthetic(tmp_path / "ds", episodes=3, length=4, obs_shape=(1,))
    with sqlite3.connect(root / "episodes.sqlite") as conn:
        conn.execute("UPDATE episodes SET score = 99 WHERE episode = 1")
    with pytest.raises(FormatError, match=r"episodes.sqlite: content checksum .* was edited or is corrupt"):
        ShardedStorage(root).verify()


def test_uncommitted_table_rewrite_is_removed_on_open(tmp_path):
    root = write_synthetic(tmp_path / "ds", episodes=2, length=4, obs_shape=(1,))
    (root / "episodes.0123456789ab.sqlite").write_bytes(b"half written")
    with ShardWriter.open(root):
        pass
    assert not (root / "episodes.0123456789ab.sqlite").exists()
    ShardedStorage(root).verify()
