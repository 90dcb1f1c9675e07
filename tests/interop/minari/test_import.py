"""Datasets written by the real ``minari`` package, imported and compared value by value with Minari's own reading."""

from __future__ import annotations

import json

import numpy as np
import pytest
from interop.minari.minari_maker import (
    DICT_ENV,
    PIXEL_ENV,
    datasets_path,
    minari_episodes,
    play,
)
from tensordict import TensorDict
from torchrl.data import TensorDictReplayBuffer

from torchrl_ext import ShardedStorage
from torchrl_ext.interop.minari import MinariSource, import_minari


def _episode(storage: ShardedStorage, e: int) -> TensorDict:
    first, length = storage.episode_bounds
    return storage[np.arange(int(first[e]), int(first[e] + length[e]))]


def _with_final(td: TensorDict, key: tuple[str, ...]) -> np.ndarray:
    """The T + 1 values Minari stores: the T of ``key`` then the last ``("next", *key)``."""
    return np.concatenate([td[key].numpy(), td[("next", *key)][-1:].numpy()])


@pytest.mark.parametrize("data_format", ["hdf5", "arrow", "parquet"])
def test_dict_observations_equal_minari_values(minari_root, tmp_path, data_format):
    dataset_id = f"tests/dict-{data_format}-v0"
    storage = import_minari(minari_root / dataset_id, tmp_path / "ds", progress=False)
    episodes, _ = minari_episodes(minari_root, dataset_id)
    assert storage.num_episodes == len(episodes) == 4 and len(storage) == sum(len(ep) for ep in episodes)
    for e, ep in enumerate(episodes):
        td = _episode(storage, e)
        assert np.array_equal(_with_final(td, ("observation", "pos")), ep.observations["pos"])
        assert np.array_equal(_with_final(td, ("observation", "mode")), ep.observations["mode"])
        assert np.array_equal(_with_final(td, ("observation", "pair", "0")), ep.observations["pair"][0])
        assert np.array_equal(_with_final(td, ("observation", "pair", "1")), ep.observations["pair"][1])
        assert np.array_equal(td["action"].numpy(), ep.actions)
        assert np.array_equal(td["next", "reward"].numpy()[:, 0], ep.rewards.astype(np.float32))
        assert np.array_equal(td["next", "terminated"].numpy()[:, 0], ep.terminations)
        assert np.array_equal(td["next", "truncated"].numpy()[:, 0], ep.truncations)
        assert np.array_equal(td["next", "done"].numpy()[:, 0], ep.terminations | ep.truncations)
        assert np.array_equal(_with_final(td, ("info", "dist")), ep.infos["dist"])
        assert np.array_equal(_with_final(td, ("info", "counts")), ep.infos["counts"])
    kinds = {c.key: (c.dtype.name, c.shape) for c in storage.manifest.schema}
    assert kinds[("observation", "mode")] == ("int64", ()) and kinds[("observation", "pair", "1")] == ("float64", (2,))
    assert kinds[("next", "reward")] == ("float32", (1,))


@pytest.mark.parametrize("data_format", ["hdf5", "arrow"])
def test_image_observations_are_decoded_as_minari_decodes_them(minari_root, tmp_path, data_format):
    dataset_id = f"tests/pixels-{data_format}-v0"
    storage = import_minari(minari_root / dataset_id, tmp_path / "ds", progress=False)
    episodes, _ = minari_episodes(minari_root, dataset_id)
    for e, ep in enumerate(episodes):
        td = _episode(storage, e)
        assert np.array_equal(_with_final(td, ("observation",)), ep.observations)
        assert np.array_equal(td["action"].numpy(), ep.actions) and td["action"].dtype.is_floating_point is False
    (obs,) = [c for c in storage.manifest.schema if c.key == ("observation",)]
    assert (obs.encoding, obs.shape, dict(obs.options)["level"]) == ("zstd", (32, 32, 3), 3)
    assert storage.manifest.source["lossy"] == {"observation": "jpeg"}


def test_raw_frames_are_kept_exactly(minari_root, tmp_path):
    storage = import_minari(minari_root / "tests/raw-pixels-hdf5-v0", tmp_path / "ds", encodings={}, progress=False)
    played = play(PIXEL_ENV, 4)  # what the fixture stored, played again with the same seeds
    for e, buffer in enumerate(played):
        assert np.array_equal(_with_final(_episode(storage, e), ("observation",)), buffer.observations)
    assert storage.manifest.source["lossy"] == {}
    assert [c.encoding for c in storage.manifest.schema if c.key == ("observation",)] == ["raw"]


@pytest.mark.parametrize("data_format", ["hdf5", "arrow"])
def test_metadata_reaches_the_manifest_and_the_episode_table(minari_root, tmp_path, data_format):
    dataset_id = f"tests/dict-{data_format}-v0"
    with datasets_path(minari_root):  # found by id, as `torchrl-ext import minari ID` finds it
        storage = import_minari(dataset_id, tmp_path / "ds", progress=False)
    source = storage.manifest.source
    assert (source["kind"], source["dataset_id"], source["data_format"]) == ("minari", dataset_id, data_format)
    assert (source["algorithm_name"], source["author"]) == ("random", ["torchrl-ext tests"])
    assert (source["code_permalink"], source["minari_version"]) == ("https://example.org/minari_maker.py", "0.5.4")
    assert json.loads(source["env_spec"])["id"] == DICT_ENV
    assert source["observation_space"]["subspaces"]["pair"]["type"] == "Tuple"
    assert source["path"] == str((minari_root / dataset_id / "data").resolve())
    _, meta = minari_episodes(minari_root, dataset_id)
    table = storage.episode_table()
    try:
        assert table.values(("episode_id", "seed")) == [(m["id"], m["seed"]) for m in meta] == [(e, e) for e in range(4)]
    finally:
        table.close()


def test_a_torchrl_buffer_samples_imported_rows(minari_root, tmp_path):
    storage = import_minari(minari_root / "tests/dict-hdf5-v0", tmp_path / "ds", progress=False)
    buffer = TensorDictReplayBuffer(storage=storage, batch_size=6)
    batch, info = buffer.sample(return_info=True)
    rows = np.asarray(info["index"])
    expected = storage[rows]
    assert batch.batch_size == (6,)
    assert np.array_equal(batch["observation", "pair", "1"].numpy(), expected["observation", "pair", "1"].numpy())
    assert np.array_equal(batch["next", "observation", "pos"].numpy(), expected["next", "observation", "pos"].numpy())


def test_source_finds_the_dataset_by_directory_or_data_dir(minari_root):
    data_dir = (minari_root / "tests/dict-hdf5-v0" / "data").resolve()
    assert MinariSource.find(minari_root / "tests/dict-hdf5-v0").data_dir == data_dir
    assert MinariSource.find(data_dir).data_dir == data_dir
    assert MinariSource.find(data_dir).image_keys() == []
    assert MinariSource.find(minari_root / "tests/pixels-arrow-v0").image_keys() == [("observation",)]


def test_unknown_dataset_id_says_where_it_looked(tmp_path):
    with datasets_path(tmp_path), pytest.raises(FileNotFoundError, match=r"no Minari dataset at .*minari download"):
        MinariSource.find("nowhere/missing-v0")
