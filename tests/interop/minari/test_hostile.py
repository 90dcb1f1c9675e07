"""Damaged or hostile Minari files: each is one ``FormatError`` naming the file, raised before a large read."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
from hostile_files import NOT_REGULAR, call_within, plant_fifo

from torchrl_ext import FormatError, ShardedStorage
from torchrl_ext.interop.minari import MinariSource, import_minari


@pytest.fixture
def copy_of(minari_root, tmp_path):
    """A private copy of one fixture dataset, to damage."""

    def copy(dataset_id: str):
        return shutil.copytree(minari_root / dataset_id, tmp_path / "src" / dataset_id) / "data"

    return copy


def _import(data_dir, tmp_path):
    return import_minari(data_dir, tmp_path / "ds", progress=False)


def test_truncated_hdf5_file(copy_of, tmp_path):
    path = copy_of("tests/dict-hdf5-v0") / "main_data.hdf5"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(FormatError, match=rf"^{path}: not a readable HDF5 file .*truncated or damaged"):
        _import(path.parent, tmp_path)
    assert not (tmp_path / "ds").exists()


def test_observations_that_are_not_t_plus_one(copy_of, tmp_path):
    data = copy_of("tests/dict-hdf5-v0")
    with h5py.File(data / "main_data.hdf5", "a") as f:
        pos = f["episode_1/observations/pos"][()]
        del f["episode_1/observations/pos"]
        f["episode_1/observations/pos"] = pos[:-1]  # T rows instead of T + 1
    steps = len(pos) - 1
    with pytest.raises(FormatError, match=rf"main_data.hdf5 episode_1/observations/pos: observation/pos has shape "
                                          rf"\({steps}, 3\), expected \({steps + 1}, 3\)"):
        _import(data, tmp_path)


def test_arrow_rows_that_are_not_t_plus_one(copy_of, tmp_path):
    data = copy_of("tests/dict-arrow-v0")
    meta = json.loads((data / "2" / "metadata.json").read_text())
    (data / "2" / "metadata.json").write_text(json.dumps({**meta, "total_steps": meta["total_steps"] + 1}))
    with pytest.raises(FormatError, match=rf"part-0.arrow: holds {meta['total_steps'] + 1} rows, expected "
                                          rf"{meta['total_steps'] + 2}"):
        _import(data, tmp_path)
    assert ShardedStorage(tmp_path / "ds").num_episodes == 2  # the episodes before it are committed


def test_object_dtype_observations(copy_of, tmp_path):
    data = copy_of("tests/dict-hdf5-v0")
    with h5py.File(data / "main_data.hdf5", "a") as f:
        n = f["episode_0/observations/mode"].shape[0]
        del f["episode_0/observations/mode"]
        f.create_dataset("episode_0/observations/mode", data=["x"] * n, dtype=h5py.string_dtype())
    with pytest.raises(FormatError, match=r"episode_0/observations/mode: has dtype <class 'str'> \(object\), "
                                          r"expected int64 numbers"):
        _import(data, tmp_path)


def test_external_link_is_refused(copy_of, tmp_path):
    data = copy_of("tests/dict-hdf5-v0")
    outside = tmp_path / "outside.hdf5"
    with h5py.File(outside, "w") as f:
        f["rewards"] = np.zeros(3)
    with h5py.File(data / "main_data.hdf5", "a") as f:
        del f["episode_0/rewards"]
        f["episode_0/rewards"] = h5py.ExternalLink(str(outside), "rewards")
    with pytest.raises(FormatError, match=r"episode_0/rewards: is a link \(ExternalLink\), expected the data itself"):
        _import(data, tmp_path)


def test_missing_episode_group(copy_of, tmp_path):
    data = copy_of("tests/pixels-hdf5-v0")
    with h5py.File(data / "main_data.hdf5", "a") as f:
        del f["episode_3"]
    with pytest.raises(FormatError, match=r"main_data.hdf5: holds 3 groups .*expected episode_0 .. episode_3"):
        _import(data, tmp_path)


def test_damaged_jpeg_frame(copy_of, tmp_path):
    data = copy_of("tests/pixels-arrow-v0")
    path = data / "1" / "part-0.arrow"
    import pyarrow as pa

    table = pa.ipc.open_file(pa.BufferReader(path.read_bytes())).read_all()
    frames = table.column("observations").to_pylist()
    frames[4] = frames[4][:40]  # a JPEG cut short
    table = table.set_column(table.column_names.index("observations"), "observations", pa.array(frames, pa.binary()))
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    with pytest.raises(FormatError, match=rf"{path}: observation frame 4 is not a readable JPEG image"):
        _import(data, tmp_path)


def test_truncated_arrow_file(copy_of, tmp_path):
    path = copy_of("tests/dict-arrow-v0") / "0" / "part-0.arrow"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(FormatError, match=rf"^{path}: not a readable arrow file"):
        _import(path.parent.parent, tmp_path)


def test_symlinked_hdf5_file(copy_of, tmp_path):
    path = copy_of("tests/dict-hdf5-v0") / "main_data.hdf5"
    moved = path.rename(tmp_path / "elsewhere.hdf5")
    path.symlink_to(moved)
    with pytest.raises(FormatError, match=rf"^{path}: is a symbolic link, expected the file itself"):
        _import(path.parent, tmp_path)


def test_symlinked_arrow_episode_directory(copy_of, tmp_path):
    data = copy_of("tests/dict-arrow-v0")
    moved = (data / "1").rename(tmp_path / "episode-1")
    (data / "1").symlink_to(moved, target_is_directory=True)
    with pytest.raises(FormatError, match=rf"^{data / '1'}: expected an episode directory, found a symbolic link"):
        _import(data, tmp_path)


def test_fifo_in_place_of_the_hdf5_file_is_refused_at_once(copy_of, tmp_path):
    fifo = plant_fifo(copy_of("tests/dict-hdf5-v0") / "main_data.hdf5")
    err, elapsed = call_within(30.0, lambda: _import(fifo.parent, tmp_path), fifos=[fifo])
    assert isinstance(err, FormatError) and elapsed < 5.0, (err, elapsed)
    with pytest.raises(FormatError, match=NOT_REGULAR):
        _import(fifo.parent, tmp_path)


@pytest.mark.parametrize(("change", "message"), [
    ({"data_format": "zarr"}, r"data_format is 'zarr', expected one of \('hdf5', 'arrow', 'parquet'\)"),
    ({"total_episodes": -1}, r"total_episodes is -1, expected an int >= 0"),
    ({"observation_space": "{not json"}, r"`observation_space` is not JSON"),
    ({"action_space": json.dumps({"type": "Graph"})}, r"`action_space` is a 'Graph' space"),
    ({"jpeg_encoding": "yes"}, r"jpeg_encoding is 'yes', expected true or false"),
])
def test_damaged_metadata_json(copy_of, change, message):
    data = copy_of("tests/dict-hdf5-v0")
    meta = json.loads((data / "metadata.json").read_text())
    (data / "metadata.json").write_text(json.dumps({**meta, **change}))
    with pytest.raises(FormatError, match=rf"^{data / 'metadata.json'}: .*{message}"):
        MinariSource.find(data)


def test_deeply_nested_space_is_refused(copy_of):
    data = copy_of("tests/dict-hdf5-v0")
    space: dict = {"type": "Discrete", "n": 2}
    for _ in range(20):
        space = {"type": "Dict", "subspaces": {"a": space}}
    meta = json.loads((data / "metadata.json").read_text())
    (data / "metadata.json").write_text(json.dumps({**meta, "observation_space": json.dumps(space)}))
    with pytest.raises(FormatError, match=r"nests deeper than 16 levels"):
        MinariSource.find(data)


def test_text_space_is_refused_naming_the_key(copy_of):
    data = copy_of("tests/dict-hdf5-v0")
    meta = json.loads((data / "metadata.json").read_text())
    space = {"type": "Dict", "subspaces": {"mission": {"type": "Text", "max_length": 8, "min_length": 1,
                                                      "charset": "abc"}}}
    (data / "metadata.json").write_text(json.dumps({**meta, "observation_space": json.dumps(space)}))
    with pytest.raises(ValueError, match=r"observation/mission is a Text space; a dataset stores numbers only"):
        MinariSource.find(data)
