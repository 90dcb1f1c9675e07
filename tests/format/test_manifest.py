"""Manifest validation: clear errors for unknown versions, edits, missing and truncated files."""

from __future__ import annotations

import json

import pytest
from tensordict import TensorDict

from torchrl_ext import FormatError, ShardedStorage, read_manifest
from torchrl_ext.format import MANIFEST_NAME, manifest_crc
from torchrl_ext.synthetic import obs_value, write_synthetic


@pytest.fixture
def root(tmp_path):
    return write_synthetic(tmp_path / "ds", episodes=4, length=6, obs_shape=(3,), shard_rows=5)


def _write(root, raw):
    """Writes an edited manifest, re-signed as a careful hand edit would (see test_unsigned_edit)."""
    raw["manifest_crc"] = manifest_crc(raw)
    (root / MANIFEST_NAME).write_text(json.dumps(raw))


def _edit(root, **changes):
    raw = json.loads((root / MANIFEST_NAME).read_text())
    raw.update(changes)
    _write(root, raw)


def test_unsigned_edit_is_refused(root):
    raw = json.loads((root / MANIFEST_NAME).read_text())
    raw["source"] = {"kind": "edited"}
    (root / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(FormatError, match="the manifest's checksum .* does not match its content"):
        ShardedStorage(root)


def test_manifest_round_trip(root):
    m = read_manifest(root)
    assert m.num_rows == 24 and m.num_episodes == 4
    assert [s.rows for s in m.shards] == [5, 5, 5, 5, 4]
    assert m.next_from_row == [("observation",)]
    assert {c.key for c in m.schema} >= {("observation",), ("next", "reward"), ("episode",), ("step",)}


def test_shard_opens_with_tensordict_load_memmap(root):
    m = read_manifest(root)
    td = TensorDict.load_memmap(root / m.shards[1].dir)
    assert td.batch_size == (5,)
    # rows 5..9: episode 0 step 5, then episode 1 steps 0..3
    assert td["episode"].tolist() == [0, 1, 1, 1, 1]
    assert td["observation"][:, 0].tolist() == obs_value([0, 1, 1, 1, 1], [5, 0, 1, 2, 3]).tolist()


def test_unknown_version_is_refused(root):
    _edit(root, format_version=99)
    with pytest.raises(FormatError, match=r"format_version 99 is not supported, this reader knows \(1, 2\)"):
        ShardedStorage(root)


def test_unknown_encoding_is_refused(root):
    raw = json.loads((root / MANIFEST_NAME).read_text())
    raw["schema"][0]["encoding"] = "h264"
    _write(root, raw)
    with pytest.raises(FormatError, match="uses encoding 'h264', this reader knows"):
        ShardedStorage(root)


def test_hand_edited_rows_are_detected(root):
    raw = json.loads((root / MANIFEST_NAME).read_text())
    raw["shards"][0]["rows"] = 7
    _write(root, raw)
    with pytest.raises(FormatError, match=r"observation.memmap: expected 21 bytes .* found 15"):
        ShardedStorage(root)


def test_path_escaping_the_dataset_is_refused(root):
    raw = json.loads((root / MANIFEST_NAME).read_text())
    raw["shards"][0]["dir"] = "../elsewhere"
    _write(root, raw)
    with pytest.raises(FormatError, match="expected a relative path inside the dataset"):
        ShardedStorage(root)


def test_missing_shard_names_its_path(root):
    m = read_manifest(root)
    import shutil

    shutil.rmtree(root / m.shards[2].dir)
    with pytest.raises(FormatError, match=r"shards/000002: shard listed in .* is missing"):
        ShardedStorage(root)


def test_truncated_column_file(root):
    m = read_manifest(root)
    path = root / m.shards[0].dir / "next" / "reward.memmap"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(FormatError, match=r"reward.memmap: expected 20 bytes .* found 17; the file is truncated"):
        ShardedStorage(root)


def test_corrupt_json(root):
    (root / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(FormatError, match="expected a JSON manifest"):
        ShardedStorage(root)


def test_missing_manifest(tmp_path):
    with pytest.raises(FileNotFoundError, match="no dataset manifest found"):
        ShardedStorage(tmp_path)


def test_checksum_detects_flipped_byte(root):
    m = read_manifest(root)
    storage = ShardedStorage(root)
    storage.verify()
    path = root / m.shards[1].dir / "observation.memmap"
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=r"shards/000001: checksum .* does not match"):
        storage.verify()
