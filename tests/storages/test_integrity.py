"""Checksums while reading: the episode table before its boundaries are used, TensorDict's meta.json, old manifests."""

from __future__ import annotations

import json
import logging
import re
import shutil
import sqlite3

import numpy as np
import pytest

from torchrl_ext import FormatError, ShardedStorage, read_manifest
from torchrl_ext.format import MANIFEST_NAME, manifest_crc
from torchrl_ext.storages.integrity import uncovered
from torchrl_ext.synthetic import write_synthetic


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """Three episodes of 6 rows, shards of 8 rows; episode 0 stores its final observation."""
    return write_synthetic(tmp_path_factory.mktemp("clean") / "ds", episodes=3, length=6, obs_shape=(2,),
                           shard_rows=8)


@pytest.fixture
def copy(tmp_path, clean):
    return shutil.copytree(clean, tmp_path / "ds")


def _shift_boundary(root, episode: int = 0) -> None:
    """Moves the end of ``episode`` one row later (its successor starts one row later): still back to back."""
    db = sqlite3.connect(root / "episodes.sqlite")
    with db:
        db.execute("UPDATE episodes SET length = length + 1 WHERE episode = ?", (episode,))
        db.execute("UPDATE episodes SET first_row = first_row + 1, length = length - 1 WHERE episode = ?",
                   (episode + 1,))
    db.close()


def _flip(path, offset: int = 3) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _strip_meta_crcs(root) -> None:
    """Rewrites the manifest as a writer that recorded no meta.json checksums would have (signed)."""
    raw = json.loads((root / MANIFEST_NAME).read_text())
    for shard in raw["shards"]:
        shard.pop("meta_crcs")
    raw["manifest_crc"] = manifest_crc(raw)
    (root / MANIFEST_NAME).write_text(json.dumps(raw))


def test_shifted_boundary_without_checks_serves_a_next_observation_across_episodes(copy, clean):
    _shift_boundary(copy)
    reference, shifted = ShardedStorage(clean), ShardedStorage(copy, verify="off")
    last = 5  # the last row of episode 0
    assert np.array_equal(shifted[last]["next", "observation"].numpy(), reference[6]["observation"].numpy())
    assert not np.array_equal(reference[last]["next", "observation"].numpy(), reference[6]["observation"].numpy())


@pytest.mark.parametrize("verify", ["first-read", "open"])
def test_shifted_boundary_is_refused_before_any_read(copy, verify):
    _shift_boundary(copy)
    with pytest.raises(FormatError, match=rf"{re.escape(str(copy / 'episodes.sqlite'))}: content checksum "
                                          r"crc32:\w+ does not match the manifest's .*run `torchrl-ext verify`"):
        ShardedStorage(copy, verify=verify)


def test_shifted_boundary_is_refused_on_refresh(copy):
    storage = ShardedStorage(copy, verify="first-read")
    assert storage[5]["episode"].item() == 0
    _shift_boundary(copy)
    with pytest.raises(FormatError, match=r"episodes\.sqlite: content checksum .* does not match"):
        storage.reader.refresh()


def test_full_verify_refuses_a_shifted_boundary(copy):
    storage = ShardedStorage(copy)
    _shift_boundary(copy)
    with pytest.raises(FormatError, match=r"episodes\.sqlite: content checksum .* does not match"):
        storage.verify()


def test_every_meta_json_is_recorded_at_commit(clean):
    m = read_manifest(clean)
    for shard in m.shards:
        on_disk = sorted(p.relative_to(clean / shard.dir).as_posix() for p in (clean / shard.dir).rglob("meta.json"))
        assert [name for name, _ in shard.meta_crcs] == on_disk == ["final/meta.json", "meta.json", "next/meta.json"]
        assert all(re.fullmatch(r"crc32:[0-9a-f]{8}", crc) for _, crc in shard.meta_crcs)
    assert uncovered(m) == []


@pytest.mark.parametrize("name", ["meta.json", "next/meta.json", "final/meta.json"])
def test_flipped_byte_in_meta_json_fails_verify(copy, name):
    path = copy / "shards" / "000001" / name
    _flip(path)
    with pytest.raises(FormatError, match=rf"{re.escape(str(path))}: checksum crc32:\w+ does not match the "
                                          r"manifest's crc32:\w+; the TensorDict metadata is corrupt"):
        ShardedStorage(copy).verify()


def test_flipped_byte_in_meta_json_fails_first_read_of_its_shard(copy):
    path = copy / "shards" / "000001" / "meta.json"
    _flip(path)
    storage = ShardedStorage(copy, verify="first-read")
    assert storage[0]["episode"].item() == 0  # shard 0 is intact
    with pytest.raises(FormatError, match=rf"{re.escape(str(path))}: checksum"):
        storage[9]


def test_missing_meta_json_fails_verify(copy):
    path = copy / "shards" / "000002" / "next" / "meta.json"
    path.unlink()
    with pytest.raises(FormatError, match=rf"{re.escape(str(path))}: TensorDict metadata listed in the manifest "
                                          "is missing"):
        ShardedStorage(copy).verify()


def test_untouched_dataset_verifies(copy, clean):
    storage = ShardedStorage(copy, verify="first-read")
    storage.verify()
    assert np.array_equal(storage[:]["observation"].numpy(), ShardedStorage(clean)[:]["observation"].numpy())


def test_old_style_manifest_opens_verifies_and_says_what_is_not_covered(copy, caplog):
    _strip_meta_crcs(copy)
    _flip(copy / "shards" / "000001" / "meta.json")  # nothing records its checksum
    m = read_manifest(copy)
    assert all(s.meta_crcs == () for s in m.shards)
    assert uncovered(m) == ["the TensorDict meta.json files of 3 of 3 shards"]
    storage = ShardedStorage(copy, verify="first-read")
    assert storage[:]["episode"].tolist() == [0] * 6 + [1] * 6 + [2] * 6
    with caplog.at_level(logging.WARNING, logger="torchrl_ext.storages.integrity"):
        storage.verify()
    assert [r.getMessage() for r in caplog.records] == [
        (f"{copy}: no checksum covers the TensorDict meta.json files of 3 of 3 shards (written before they "
         "were recorded)")]


def test_malformed_meta_crcs_are_refused(copy):
    raw = json.loads((copy / MANIFEST_NAME).read_text())
    raw["shards"][0]["meta_crcs"] = {"../../etc/passwd": "crc32:00000000"}
    raw["manifest_crc"] = manifest_crc(raw)
    (copy / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(FormatError, match=r"expected a relative path inside the dataset, got '\.\./\.\./etc/passwd'"):
        ShardedStorage(copy)
