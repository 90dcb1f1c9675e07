"""Corruption is caught: bit flips in any shard file, hostile manifests, paths outside the root."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torchrl_ext import FormatError, ShardedStorage
from torchrl_ext.format import MANIFEST_NAME, read_manifest
from torchrl_ext.synthetic import write_synthetic

ARGS = dict(episodes=5, length=(3, 9), obs_shape=(3, 2), shard_rows=8, events_every=2)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("clean") / "ds", **ARGS, encodings={"action": "zstd"})


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def _shard_files(root):
    return sorted(p for p in (root / "shards").rglob("*") if p.is_file() and p.name != "meta.json"
                  and p.stat().st_size)


def test_every_shard_file_is_covered(tmp_path, clean):
    files = [p.relative_to(clean) for p in _shard_files(clean)]
    assert any("final" in str(p) for p in files) and any(p.suffix == ".chunks" for p in files)
    rng = np.random.default_rng(0)
    for rel in files:
        root = _copy(clean, tmp_path / str(rel).replace("/", "_"))
        path = root / rel
        data = bytearray(path.read_bytes())
        data[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
        path.write_bytes(bytes(data))
        with pytest.raises(FormatError, match="checksum|chunk|crc|corrupt"):
            storage = ShardedStorage(root)  # an encoded index is checked on open
            storage.verify()


@pytest.mark.parametrize("seed", range(4))
def test_event_logs_and_episode_table_are_covered(tmp_path, clean, seed):
    rng = np.random.default_rng(seed)
    reference = ShardedStorage(clean).episode_table()
    want = [reference.metadata(e) for e in range(5)]
    for rel in [p.relative_to(clean) for p in sorted(clean.glob("events/log-*"))] + [Path("episodes.sqlite")]:
        root = _copy(clean, tmp_path / f"{seed}_{rel.name}")
        data = bytearray((root / rel).read_bytes())
        data[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
        (root / rel).write_bytes(bytes(data))
        try:
            storage = ShardedStorage(root)
            storage.verify()
        except FormatError:
            continue
        # only a flip in bytes SQLite does not use can pass, and then the table reads the same
        assert rel.name == "episodes.sqlite"
        table = storage.episode_table()
        assert [table.metadata(e) for e in range(5)] == want


def test_symlinked_shard_outside_root_is_refused(tmp_path, clean):
    root = _copy(clean, tmp_path / "ds")
    outside = _copy(root / "shards" / "000000", tmp_path / "elsewhere")
    import shutil

    shutil.rmtree(root / "shards" / "000000")
    os.symlink(outside, root / "shards" / "000000")
    with pytest.raises(FormatError, match="resolves to .*outside the dataset"):
        ShardedStorage(root)


def test_symlinked_episode_table_outside_root_is_refused(tmp_path, clean):
    root = _copy(clean, tmp_path / "ds")
    (root / "episodes.sqlite").unlink()
    (tmp_path / "passwd").write_text("root:x:0:0\n")
    os.symlink(tmp_path / "passwd", root / "episodes.sqlite")
    with pytest.raises(FormatError, match="episodes.sqlite.*outside the dataset"):
        ShardedStorage(root)


def test_garbage_episode_table_names_the_file(tmp_path, clean):
    root = _copy(clean, tmp_path / "ds")
    (root / "episodes.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(FormatError, match=r"episodes\.sqlite: the episode table is not an SQLite database"):
        ShardedStorage(root)


def test_truncated_final_file_is_refused_on_open(tmp_path, clean):
    root = _copy(clean, tmp_path / "ds")
    final = root / "shards" / "000000" / "final" / "observation.memmap"
    final.write_bytes(final.read_bytes()[:-3])
    with pytest.raises(FormatError, match="final/observation.memmap: expected .* bytes"):
        ShardedStorage(root)


@pytest.mark.parametrize("edit, match", [
    (lambda m: m["shards"][0].update(finals=-1), "`finals` of shard"),
    (lambda m: m["shards"][0].update(finals=10 ** 9), "`finals` of shard"),
    (lambda m: m.update(format_version=True), "format_version True is not supported"),
    (lambda m: m["schema"][0].update(shape=[2 ** 40, 2 ** 40]), "bytes per row, more than"),
    (lambda m: m["schema"][0].update(dtype="object"), "has dtype 'object'"),
    (lambda m: m["schema"][0].update(encoding="lz9"), "uses encoding 'lz9'"),
    (lambda m: m.update(num_rows=1.5), "`num_rows` to be an int"),
])
def test_hostile_manifest_fields(tmp_path, clean, edit, match):
    root = _copy(clean, tmp_path / "ds")
    m = json.loads((root / MANIFEST_NAME).read_text())
    edit(m)
    (root / MANIFEST_NAME).write_text(json.dumps(m))
    with pytest.raises(FormatError, match=match):
        ShardedStorage(root)


def test_deeply_nested_manifest_is_a_format_error(tmp_path, clean):
    root = _copy(clean, tmp_path / "ds")
    (root / MANIFEST_NAME).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(FormatError, match="could not parse it"):
        read_manifest(root)


def test_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        root = write_synthetic(tmp_path / "ds", episodes=2, length=3, obs_shape=(1,))
    finally:
        os.umask(old)
    modes = {p.relative_to(root).as_posix(): stat.S_IMODE(p.stat().st_mode)
             for p in root.rglob("*") if p.is_file()}
    assert modes[MANIFEST_NAME] == 0o644
    assert set(modes.values()) == {0o644}
    assert ".writer.lock" not in modes  # released and removed on close


_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.floats(allow_nan=False),
                     st.text(max_size=8))


def _paths(obj, prefix=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))
    yield prefix


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_manifest_mutations_open_identically_or_raise_format_error(tmp_path_factory, clean, data):
    root = _copy(clean, tmp_path_factory.mktemp("fuzz") / "ds")
    original = json.loads((root / MANIFEST_NAME).read_text())
    mutated = json.loads(json.dumps(original))
    paths = [p for p in _paths(mutated) if p]
    path = data.draw(st.sampled_from(paths))
    parent = mutated
    for k in path[:-1]:
        parent = parent[k]
    action = data.draw(st.sampled_from(["replace", "delete"]))
    if action == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(st.one_of(_SCALARS, st.lists(_SCALARS, max_size=3),
                                               st.dictionaries(st.text(max_size=4), _SCALARS, max_size=2)))
    (root / MANIFEST_NAME).write_text(json.dumps(mutated))
    reference = ShardedStorage(clean)
    try:
        storage = ShardedStorage(root)
        rows = storage[:]
    except FormatError:
        return
    same = len(storage) == len(reference) and (rows == reference[:]).all()
    # a mutation that still opens must give the same rows (or a coherent prefix of whole episodes)
    assert same or (len(storage) < len(reference) and (rows == reference[: len(storage)]).all())
