"""``export_lerobot`` writes LeRobot v3.0 datasets; read back here with the importer they equal their source.

``check_export.py`` opens the same exports with the real ``lerobot`` package (see the README).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from interop.lerobot.make_fixtures import (
    GENERIC_LENGTHS,
    GENERIC_TASKS,
    LENGTHS,
    write_generic,
)

from torchrl_ext import ShardedStorage, ShardWriter
from torchrl_ext.encodings import psnr
from torchrl_ext.interop.lerobot import (
    LeRobotFrames,
    LeRobotLayout,
    export_lerobot,
    import_lerobot,
)
from torchrl_ext.storages import EpisodeView
from torchrl_ext.synthetic import make_episode

IMAGE = ("observation", "image")


def _all(root) -> dict:
    storage = ShardedStorage(root)
    return storage[np.arange(len(storage))]


@pytest.fixture(scope="module")
def generic(tmp_path_factory):
    root = tmp_path_factory.mktemp("generic") / "ds"
    write_generic(root)
    return root


def test_an_imported_dataset_round_trips_equal(imported, tmp_path):
    root = imported["h264"][0]
    out = export_lerobot(root, tmp_path / "lr", progress=False)
    import_lerobot(out, tmp_path / "back", progress=False)
    a, b = _all(root), _all(tmp_path / "back")
    keys = [k for k in a.keys(include_nested=True, leaves_only=True)]
    assert ("observation", "images", "top") in keys and ("next", "observation", "images", "top") in keys
    for key in keys:
        assert np.array_equal(a[key].numpy(), b[key].numpy()), key  # frames too: lossless by default
    src, back = ShardedStorage(root).manifest.source, ShardedStorage(tmp_path / "back").manifest.source
    assert back["features"] == src["features"] and back["tasks"] == src["tasks"]
    assert EpisodeView(tmp_path / "back", "task LIKE '%cube%'").episode_ids.tolist() == [0, 2]


def test_a_dataset_of_this_library_round_trips_its_columns(generic, tmp_path):
    out = export_lerobot(generic, tmp_path / "lr", fps=10, progress=False)
    layout = LeRobotLayout(out)
    assert layout.video_keys == ["observation.image"] and layout.tasks == list(GENERIC_TASKS)
    assert sorted(layout.features) == ["action", "episode_index", "frame_index", "index", "next.done", "next.reward",
                                       "next.terminated", "next.truncated", "observation.image",
                                       "observation.state", "task_index", "timestamp"]
    import_lerobot(out, tmp_path / "back", progress=False)
    a, b = _all(generic), _all(tmp_path / "back")
    for key in (IMAGE, ("observation", "state"), ("action",), ("next", "reward"), ("next", "done"), ("step",)):
        assert np.array_equal(a[key].numpy(), b[key].numpy()), key
    np.testing.assert_array_equal(b["timestamp"].numpy(), np.concatenate([np.arange(n) / 10 for n in GENERIC_LENGTHS])
                                  .astype(np.float32))
    assert EpisodeView(tmp_path / "back").metadata(["task"])["task"] == list(GENERIC_TASKS)


def test_a_view_exports_only_its_episodes_renumbered(generic, tmp_path):
    out = export_lerobot(EpisodeView(generic, "task LIKE '%cube%'"), tmp_path / "lr", fps=10, progress=False)
    layout = LeRobotLayout(out)
    assert [ep.length for ep in layout.episodes] == [GENERIC_LENGTHS[0], GENERIC_LENGTHS[2]]
    assert [ep.tasks for ep in layout.episodes] == [("stack the cube",), ("lift the cube",)]
    items = LeRobotFrames(import_lerobot(out, tmp_path / "back", progress=False).root)
    last = items[len(items) - 1]
    assert (last["episode_index"].item(), last["index"].item(), last["task"]) == (1, sum(GENERIC_LENGTHS[::2]) - 1,
                                                                                  "lift the cube")
    assert last["next.reward"].item() == 2 + 0.5 * (GENERIC_LENGTHS[2] - 1)


def test_the_files_are_what_lerobot_reads(imported, tmp_path):
    out = export_lerobot(imported["h264"][0], tmp_path / "lr", progress=False)
    info = json.loads((out / "meta/info.json").read_text())
    assert (info["codebase_version"], info["fps"], info["total_episodes"], info["total_frames"], info["total_tasks"]) \
        == ("v3.0", 10, 3, sum(LENGTHS), 2)
    assert info["features"]["observation.images.top"]["info"]["video.pix_fmt"] == "gbrp"
    assert info["features"]["observation.state"]["names"] == [f"j{i}" for i in range(6)]
    episodes = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [e["videos/observation.images.top/from_timestamp"] for e in episodes] == [0.0, 2.3, 5.4]
    assert [e["dataset_to_index"] for e in episodes] == list(np.cumsum(LENGTHS))
    data = pq.read_table(out / "data/chunk-000/file-000.parquet")
    assert data.schema.field("observation.state").type.list_size == 6
    assert data.column("index").to_pylist() == list(range(sum(LENGTHS)))
    stats = json.loads((out / "meta/stats.json").read_text())
    assert stats["observation.state"]["count"] == [sum(LENGTHS)]
    assert np.asarray(stats["observation.images.top"]["mean"]).shape == (3, 1, 1)
    assert stats["observation.state"]["max"][1] == max(LENGTHS) - 1  # state[1] is the step


def test_a_lossy_export_stays_close(generic, tmp_path):
    out = export_lerobot(generic, tmp_path / "lr", fps=10, crf=23, progress=False)
    assert LeRobotLayout(out).features["observation.image"].dtype == "video"
    import_lerobot(out, tmp_path / "back", progress=False)
    assert psnr(_all(generic)[IMAGE].numpy(), _all(tmp_path / "back")[IMAGE].numpy()) > 24  # yuv420p on 32x32


def test_a_non_empty_out_dir_is_refused(generic, tmp_path):
    (tmp_path / "lr").mkdir()
    (tmp_path / "lr" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"`out_dir` .*lr exists and is not an empty directory; choose a new"):
        export_lerobot(generic, tmp_path / "lr", fps=10, progress=False)
    assert (tmp_path / "lr" / "notes.txt").read_text() == "mine"


def test_columns_lerobot_cannot_hold_are_named(tmp_path):
    with ShardWriter.create(tmp_path / "ds") as w:
        w.add_episode(make_episode(0, 4, (3, 2)))
    with pytest.raises(ValueError, match=r"columns \['observation'\] are neither uint8 \[H, W, 3\] frames nor one "
                                         r"number or vector per frame; leave them out with `keys=`"):
        export_lerobot(tmp_path / "ds", tmp_path / "lr", fps=5, progress=False)
    out = export_lerobot(tmp_path / "ds", tmp_path / "lr", fps=5, keys=["action", "next/reward"], progress=False)
    assert sorted(LeRobotLayout(out).features) == ["action", "episode_index", "frame_index", "index", "next.reward",
                                                   "task_index", "timestamp"]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({}, r"`fps` must be a positive int \(the dataset records none\), got None"),
    ({"fps": 10, "crf": 60}, r"`crf` must be an int in \[0, 51\], got 60"),
    ({"fps": 10, "keys": ["observation.depth"]}, r"`keys` names \['observation.depth'\], not columns of"),
])
def test_bad_arguments_are_refused(generic, tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        export_lerobot(generic, tmp_path / "lr", progress=False, **kwargs)
    assert not (tmp_path / "lr").exists()


def test_reading_an_rgb_export_leaves_later_yuv_frames_exact(imported, tmp_path):
    from interop.lerobot.reference import frames_of, load_reference

    out = export_lerobot(imported["h264"][0], tmp_path / "lr", progress=False)  # gbrp: a stream with RGB colours
    back = ShardedStorage(import_lerobot(out, tmp_path / "back", progress=False).root, decode_cache_bytes=0)
    yuv = ShardedStorage(imported["h264"][0], decode_cache_bytes=0)
    for index, item in load_reference("h264")["items"].items():
        back[int(index)]  # the same thread's decoder decodes the RGB chunk first
        np.testing.assert_array_equal(yuv[int(index)][("observation", "images", "top")].numpy(),
                                      frames_of(item["observation.images.top"]).transpose(1, 2, 0))
