"""Malformed and hostile LeRobot directories: each refused with one FormatError line naming the file."""

from __future__ import annotations

import json
import os
from fractions import Fraction

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from interop.lerobot.make_fixtures import LENGTHS

from torchrl_ext.format import FormatError
from torchrl_ext.interop.lerobot import LeRobotLayout, import_lerobot

INFO = "meta/info.json"
EPISODES = "meta/episodes/chunk-000/file-000.parquet"
VIDEO = "videos/observation.images.top/chunk-000/file-000.mp4"


def _edit_info(src, **changes):
    info = json.loads((src / INFO).read_text())
    info.update(changes)
    (src / INFO).write_text(json.dumps(info))


def _edit_episodes(src, column, values):
    table = pq.read_table(src / EPISODES)
    table = table.set_column(table.column_names.index(column), column, pa.array(values, table.schema.field(column).type))
    pq.write_table(table, src / EPISODES)


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_the_fixture_reads_as_recorded(fixture_copy):
    layout = LeRobotLayout(fixture_copy("h264"))
    assert (layout.fps, layout.video_keys, layout.tasks) == (10, ["observation.images.top"],
                                                             ["pick up the red cube", "push the blue block"])
    assert [ep.length for ep in layout.episodes] == list(LENGTHS)
    assert [ep.first_row for ep in layout.episodes] == [0, LENGTHS[0], LENGTHS[0] + LENGTHS[1]]
    spans = [ep.videos["observation.images.top"] for ep in layout.episodes]
    assert [s.from_timestamp for s in spans] == pytest.approx([0.0, 2.3, 5.4])
    assert spans[-1].to_timestamp == pytest.approx(8.0)


@pytest.mark.parametrize(("change", "match"), [
    ({"codebase_version": "v2.1"}, r"info\.json: codebase_version 'v2\.1', this reader expects 'v3\.0'; convert"),
    ({"fps": 0}, r"info\.json: `fps`: expected an int in \[1, 100000\), found 0"),
    ({"features": {"a/b": {"dtype": "float32", "shape": [1]}}}, r"feature name 'a/b' is not dot-separated names"),
    ({"features": {"x": {"dtype": "complex64", "shape": [1]}}}, r"feature 'x' has dtype 'complex64'; expected one of"),
    ({"features": {"x": {"dtype": "float32", "shape": [-1]}}}, r"feature 'x' has shape \[-1\]; expected 1 to 4"),
    ({"data_path": "../../etc/{chunk_index}.parquet"}, r"`data_path` is '\.\./\.\./etc/.*expected LeRobot v3\.0's"),
])
def test_a_bad_info_json_is_refused(fixture_copy, change, match):
    src = fixture_copy("h264")
    _edit_info(src, **change)
    with pytest.raises(FormatError, match=match) as err:
        import_lerobot(src, src.parent / "ds", progress=False)
    assert _one_line(err).startswith(str(src / INFO))
    assert not (src.parent / "ds").exists()


def test_info_json_that_is_not_json_is_refused(fixture_copy):
    src = fixture_copy("h264")
    (src / INFO).write_text("{not json")
    with pytest.raises(FormatError, match=r"info\.json: not valid JSON \(JSONDecodeError\)"):
        LeRobotLayout(src)


def test_a_directory_without_lerobot_files_is_refused(tmp_path):
    with pytest.raises(FormatError, match=r"meta/info\.json: missing; expected a LeRobot v3\.0 dataset directory"):
        import_lerobot(tmp_path, tmp_path / "ds", progress=False)


def test_episode_offsets_past_the_data_are_refused(fixture_copy):
    src = fixture_copy("h264")
    grown = LENGTHS[-1] + 5
    _edit_episodes(src, "length", [*LENGTHS[:-1], grown])
    _edit_episodes(src, "dataset_to_index", [LENGTHS[0], LENGTHS[0] + LENGTHS[1], sum(LENGTHS) + 5])
    with pytest.raises(FormatError, match=r"file-000\.parquet: episode 2 needs the rows with index 54\.\.84 in order, "
                                          r"the file holds 26 of them; the offsets in .*meta/episodes point past") as e:
        import_lerobot(src, src.parent / "ds", progress=False)
    _one_line(e)


def test_episodes_that_are_not_back_to_back_are_refused(fixture_copy):
    src = fixture_copy("h264")
    _edit_episodes(src, "dataset_from_index", [0, LENGTHS[0] + 1, LENGTHS[0] + LENGTHS[1]])
    with pytest.raises(FormatError, match=r"episode row 1: rows \[24, 54\) for length 31, expected \[23, 54\)"):
        LeRobotLayout(src)


def _truncate_video(path, seconds):
    """Keeps the packets shown before ``seconds`` (stream copy)."""
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(path)) as inp, av.open(str(tmp), "w") as out:
        stream = inp.streams.video[0]
        copy = out.add_stream_from_template(stream, opaque=True)
        for packet in inp.demux(stream):
            if packet.dts is None or packet.pts * Fraction(stream.time_base) >= seconds:
                continue
            packet.stream = copy
            out.mux(packet)
    os.replace(tmp, path)


@pytest.mark.parametrize("name", ["h264", "av1"])
def test_a_video_shorter_than_its_episode_is_refused(fixture_copy, name):
    src = fixture_copy(name)
    _truncate_video(src / VIDEO, 6.0)  # the last episode is shown from 5.4 s to 8.0 s
    with pytest.raises(FormatError, match=r"file-000\.mp4: episode 2 'observation\.images\.top' has 26 rows from "
                                          r"5\.4000s to 7\.9000s, the video shows 6 pictures .*shorter than its "
                                          r"episode") as err:
        import_lerobot(src, src.parent / "ds", progress=False)
    _one_line(err)
    assert (src.parent / "ds").exists()  # the episodes before it are committed, and a rerun resumes after them


def test_a_data_file_linked_from_outside_is_refused(fixture_copy, tmp_path):
    src = fixture_copy("h264")
    data = src / "data/chunk-000/file-000.parquet"
    outside = tmp_path / "elsewhere.parquet"
    os.replace(data, outside)
    data.symlink_to(outside)
    with pytest.raises(FormatError, match=r"file-000\.parquet: resolves to .*elsewhere\.parquet, outside the dataset"):
        import_lerobot(src, tmp_path / "ds", progress=False)


def test_a_fifo_in_place_of_the_task_table_is_refused(fixture_copy):
    src = fixture_copy("h264")
    (src / "meta/tasks.parquet").unlink()
    os.mkfifo(src / "meta/tasks.parquet")
    with pytest.raises(FormatError, match=r"tasks\.parquet: expected a regular file, found a FIFO"):
        LeRobotLayout(src)


def test_a_damaged_parquet_file_is_refused(fixture_copy):
    src = fixture_copy("h264")
    (src / "meta/tasks.parquet").write_bytes(b"PAR1" + bytes(64))
    with pytest.raises(FormatError, match=r"tasks\.parquet: not a readable parquet file \(Arrow"):
        LeRobotLayout(src)


def test_a_task_index_outside_the_task_table_is_refused(fixture_copy):
    src = fixture_copy("h264")
    path = src / "data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    tasks = np.asarray(table.column("task_index"))
    tasks[5] = 7
    pq.write_table(table.set_column(table.column_names.index("task_index"), "task_index", pa.array(tasks)), path)
    with pytest.raises(FormatError, match=r"episode 0: task_index outside the 2 tasks of .*tasks\.parquet"):
        import_lerobot(src, src.parent / "ds", progress=False)
