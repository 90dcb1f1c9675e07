"""Files the library creates in a dataset never land outside it, nor go through a planted symlink.

A directory the library writes into (``shards/``, ``events/``, ``dicts/``,
``.preprocess/``) that links outside the root is refused before anything is
written there; a planted name where a new file goes is replaced or removed,
never followed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hostile_files import OUTSIDE

from torchrl_ext import EventIndex, ShardedStorage, ShardWriter, preprocess
from torchrl_ext.encodings import Zstd
from torchrl_ext.format import FormatError
from torchrl_ext.synthetic import make_episode, obs_value, write_synthetic

SYNTH = dict(episodes=2, length=10, obs_shape=(2,), events_every=3)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("clean") / "ds", **SYNTH)


def _observations(root: Path, lengths: list[int]) -> bool:
    e = np.repeat(np.arange(len(lengths)), lengths)
    t = np.concatenate([np.arange(n) for n in lengths])
    return np.array_equal(ShardedStorage(root)[:]["observation"][:, 0].numpy(), obs_value(e, t))


def _append(root: Path) -> None:
    with ShardWriter.open(root) as w:
        w.add_episode(make_episode(2, 4, (2,)), events=[(1, "late", 1.0)])


def _create_in(root: Path) -> None:
    write_synthetic(root, **SYNTH)


def _create_with_dictionary(root: Path) -> None:
    write_synthetic(root, **SYNTH, encodings={"observation": Zstd(chunk_rows=4, dictionary=True)})


def _preprocess(root: Path) -> None:
    preprocess(root.parent / "src", lambda td: td, root, executor="thread", num_workers=1, pbar=False)


# (existing dataset?, directory linked outside, what writes into it)
CASES = [
    (True, "events", _append),
    (True, "shards", _append),
    (False, "shards", _create_in),
    (False, "events", _create_in),
    (False, "dicts", _create_with_dictionary),
    (False, ".preprocess", _preprocess),
]


@pytest.mark.parametrize("existing, rel, write", CASES, ids=[f"{c[1]}-{c[2].__name__}" for c in CASES])
def test_directory_linked_outside_is_refused_before_writing(clean, tmp_path, existing, rel, write):
    shutil.copytree(clean, tmp_path / "src")
    root = tmp_path / "ds"
    if existing:
        shutil.copytree(clean, root)
        shutil.rmtree(root / rel)
    else:
        root.mkdir()
    outside = tmp_path / "elsewhere"
    (outside / "000099").mkdir(parents=True)  # names a writer's clean-up would remove inside a dataset
    (outside / "log-000099.npz").write_bytes(b"kept")
    (root / rel).symlink_to(outside)
    with pytest.raises(FormatError, match=f"{rel}.* resolves to {outside.resolve()}.*, outside the dataset"):
        write(root)
    assert sorted(p.name for p in outside.iterdir()) == ["000099", "log-000099.npz"]
    assert (outside / "log-000099.npz").read_bytes() == b"kept"


def test_dangling_episode_table_link_is_removed_not_followed(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    (root / "episodes.sqlite").symlink_to(tmp_path / "created-elsewhere.sqlite")
    write_synthetic(root, **SYNTH)
    assert not (tmp_path / "created-elsewhere.sqlite").exists()
    assert not (root / "episodes.sqlite").is_symlink()
    assert _observations(root, [10, 10])


def test_planted_pending_shard_link_is_removed_not_followed(clean, tmp_path):
    root = Path(shutil.copytree(clean, tmp_path / "ds"))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "kept").write_bytes(b"kept")
    (root / "shards" / ".tmp-000001").symlink_to(outside)
    _append(root)
    assert sorted(os.listdir(outside)) == ["kept"]
    assert _observations(root, [10, 10, 4])


def test_saved_index_link_to_outside_is_replaced_not_followed(clean, tmp_path):
    root = Path(shutil.copytree(clean, tmp_path / "ds"))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "meta.json").write_bytes(b"{}")
    (root / "events" / "index").symlink_to(outside)
    with pytest.raises(FormatError, match=OUTSIDE):
        EventIndex.load(root)
    index = EventIndex.build(root)  # saves over the link
    assert (outside / "meta.json").read_bytes() == b"{}" and sorted(os.listdir(outside)) == ["meta.json"]
    assert EventIndex.load(root).counts() == index.counts() == {"episode_end": 2, "tick:0": 8}
