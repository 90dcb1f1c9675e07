"""LeRobot v3.0 datasets written by the real ``lerobot==0.4.4``, imported and compared with LeRobot's own reading."""

from __future__ import annotations

import numpy as np
import pytest
from interop.lerobot.make_fixtures import (
    FIXTURES,
    FPS,
    LENGTHS,
    TASKS,
    action,
    frame,
    state,
)
from interop.lerobot.reference import frames_of, load_reference

from torchrl_ext import ShardedStorage, ShardWriter
from torchrl_ext.encodings import psnr
from torchrl_ext.events import EventIndex
from torchrl_ext.interop.lerobot import ImportStats, import_lerobot
from torchrl_ext.interop.lerobot import importer as importer_module
from torchrl_ext.storages import EpisodeView

IMAGE, STATE = ("observation", "images", "top"), ("observation", "state")
FIRST = np.cumsum((0, *LENGTHS[:-1]))


def _all(root) -> dict:
    storage = ShardedStorage(root)
    return storage[np.arange(len(storage))]


@pytest.mark.parametrize("name", ["h264", "av1"])
def test_frames_equal_lerobots_own_decoding(imported, name):
    root, _ = imported[name]
    storage = ShardedStorage(root)
    ref = load_reference(name)
    for index, item in ref["items"].items():
        ours = storage[int(index)][IMAGE].numpy()
        np.testing.assert_array_equal(ours, frames_of(item["observation.images.top"]).transpose(1, 2, 0))


@pytest.mark.parametrize("name", ["h264", "av1"])
def test_state_action_and_timestamps_are_the_recorded_values(imported, name):
    td = _all(imported[name][0])
    for e, n in enumerate(LENGTHS):
        rows = slice(FIRST[e], FIRST[e] + n)
        np.testing.assert_array_equal(td[STATE][rows].numpy(), np.stack([state(e, t) for t in range(n)]))
        np.testing.assert_array_equal(td["action"][rows].numpy(), np.stack([action(e, t) for t in range(n)]))
        np.testing.assert_array_equal(td["timestamp"][rows].numpy(), np.arange(n, dtype=np.float32) / FPS)
        np.testing.assert_array_equal(td["step"][rows].numpy(), np.arange(n))
    assert td["task_index"].tolist() == [TASKS.index(TASKS[e]) for e, n in enumerate(LENGTHS) for _ in range(n)]


@pytest.mark.parametrize("name", ["h264", "av1"])
def test_h264_and_av1_chunks_are_kept_as_lerobot_encoded_them(imported, name):
    stats = imported[name][1]
    assert (stats.passthrough_chunks, stats.decoded_episodes, stats.frames, stats.reasons) == (3, 0, sum(LENGTHS), {})
    encodings = {c.key: (c.encoding, c.options_dict.get("codec")) for c in
                 ShardedStorage(imported[name][0]).manifest.schema}
    assert encodings[IMAGE] == ("video", name)
    assert encodings[STATE] == ("raw", None)


def test_frames_are_close_to_what_was_recorded(imported):
    td = _all(imported["h264"][0])
    recorded = np.stack([frame(e, t) for e, n in enumerate(LENGTHS) for t in range(n)])
    assert psnr(recorded, td[IMAGE].numpy()) > 25  # LeRobot's crf=30 yuv420p encoding, stored as it is


def test_without_next_reward_rewards_are_zero_and_episodes_truncated(imported):
    root = imported["h264"][0]
    td = _all(root)
    assert td["next", "reward"].shape == (sum(LENGTHS), 1) and not td["next", "reward"].any()
    last = np.isin(np.arange(sum(LENGTHS)), FIRST + np.asarray(LENGTHS) - 1)
    assert td["next", "done"][:, 0].numpy().tolist() == last.tolist()
    assert td["next", "truncated"][:, 0].numpy().tolist() == last.tolist()
    assert not td["next", "terminated"].any()
    source = ShardedStorage(root).manifest.source
    assert source["reward"].startswith("zeros") and source["final_observation"].startswith("the last frame")


def test_next_reward_and_next_done_are_lerobots(imported):
    td = _all(imported["av1"][0])
    for e, n in enumerate(LENGTHS):
        rows = slice(FIRST[e], FIRST[e] + n)
        expected = (np.arange(n) == n - 1).astype(np.float32) + np.float32(0.1 * e)
        np.testing.assert_array_equal(td["next", "reward"][rows][:, 0].numpy(), expected)
        assert td["next", "terminated"][rows][-1].item() is (e != 1)  # recorded next.done
        assert td["next", "truncated"][rows][-1].item() is (e == 1)
        assert td["next", "done"][rows][:, 0].tolist() == [t == n - 1 for t in range(n)]


@pytest.mark.parametrize("name", ["h264", "av1"])
def test_next_observation_is_the_following_frame_and_the_last_its_own(imported, name):
    td = _all(imported[name][0])
    for e, n in enumerate(LENGTHS):
        ep = td[FIRST[e]:FIRST[e] + n]
        np.testing.assert_array_equal(ep["next", *STATE][:-1].numpy(), ep[STATE][1:].numpy())
        np.testing.assert_array_equal(ep["next", *STATE][-1].numpy(), state(e, n - 1))
        np.testing.assert_array_equal(ep["next", *IMAGE][:-1].numpy(), ep[IMAGE][1:].numpy())
        np.testing.assert_array_equal(ep["next", *IMAGE][-1].numpy(), ep[IMAGE][-1].numpy())


def test_tasks_are_episode_metadata_and_events(imported):
    root = imported["h264"][0]
    assert EpisodeView(root, "task LIKE '%cube%'").episode_ids.tolist() == [0, 2]
    assert EpisodeView(root, "task LIKE '%blue%'").metadata(["task", "lerobot_episode"]) == {
        "task": ["push the blue block"], "lerobot_episode": [1]}
    index = EventIndex.load(root)
    assert index.counts() == {"task:pick up the red cube": 2, "task:push the blue block": 1}
    assert sorted(zip(index.episode.tolist(), index.step.tolist())) == [(0, 0), (1, 0), (2, 0)]
    assert ShardedStorage(root).manifest.source["tasks"] == ["pick up the red cube", "push the blue block"]


@pytest.mark.parametrize("name", ["h264", "av1"])
def test_chosen_encoding_decodes_to_the_same_frames(imported, tmp_path, name):
    stats = import_lerobot(FIXTURES / name, tmp_path / "zstd", encodings={"observation.images.top": "zstd"},
                           progress=False)
    assert (stats.passthrough_chunks, stats.decoded_episodes) == (0, 3)
    assert stats.reasons == {f"codec {name!r} is decoded": 3}
    assert ShardedStorage(tmp_path / "zstd").manifest.column(IMAGE).encoding == "zstd"
    assert np.array_equal(_all(tmp_path / "zstd")[IMAGE].numpy(), _all(imported[name][0])[IMAGE].numpy())


def test_video_encoding_of_an_av1_source_encodes_h264_again(imported, tmp_path):
    stats = import_lerobot(FIXTURES / "av1", tmp_path / "v", encodings={("observation", "images", "top"): "video"},
                           progress=False)
    assert stats.decoded_episodes == 3 and stats.passthrough_chunks == 0
    storage = ShardedStorage(tmp_path / "v")
    assert storage.manifest.column(IMAGE).encoding == "video"
    assert psnr(_all(imported["av1"][0])[IMAGE].numpy(), storage[np.arange(len(storage))][IMAGE].numpy()) > 28


def test_an_interrupted_import_resumes_after_its_committed_episodes(imported, tmp_path, monkeypatch):
    calls = []
    real = importer_module.read_episode_video

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("power cut while reading episode 1")
        return real(*args, **kwargs)

    monkeypatch.setattr(importer_module, "read_episode_video", failing)
    with pytest.raises(RuntimeError, match="power cut"):
        import_lerobot(FIXTURES / "h264", tmp_path / "ds", progress=False)
    assert ShardedStorage(tmp_path / "ds").num_episodes == 1
    monkeypatch.setattr(importer_module, "read_episode_video", real)
    stats = import_lerobot(FIXTURES / "h264", tmp_path / "ds", progress=False)
    assert isinstance(stats, ImportStats) and (stats.kept, stats.episodes) == (1, 2)
    resumed, whole = _all(tmp_path / "ds"), _all(imported["h264"][0])
    for key in (IMAGE, STATE, ("action",), ("timestamp",), ("next", "done")):
        assert np.array_equal(resumed[key].numpy(), whole[key].numpy()), key


def test_a_root_holding_another_import_is_refused(imported):
    with pytest.raises(ValueError, match=r"holds another dataset .* choose another root or delete it"):
        import_lerobot(FIXTURES / "av1", imported["h264"][0], progress=False)


def _png(rgb: np.ndarray) -> bytes:
    import av

    ctx = av.CodecContext.create("png", "w")
    ctx.width, ctx.height, ctx.pix_fmt = rgb.shape[1], rgb.shape[0], "rgb24"
    return b"".join(bytes(p) for p in [*ctx.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")),
                                       *ctx.encode(None)])


def test_image_features_are_decoded_from_their_png_bytes(tmp_path):
    """LeRobot's ``use_videos=False`` layout: frames as PNG bytes in a struct column of the data parquet."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from torchrl_ext.interop.lerobot import export_lerobot

    with ShardWriter.create(tmp_path / "ds") as w:
        for e, n in enumerate((4, 6)):
            w.add_episode({"observation": {"state": np.stack([state(e, t) for t in range(n)])},
                           "action": np.stack([action(e, t) for t in range(n)]),
                           "next": {"reward": np.zeros((n, 1), np.float32), "done": np.arange(n)[:, None] == n - 1}})
    src = export_lerobot(tmp_path / "ds", tmp_path / "lr", fps=FPS, progress=False)
    data = src / "data/chunk-000/file-000.parquet"
    table = pq.read_table(data)
    rows = [(int(e), int(t)) for e, t in zip(table.column("episode_index").to_pylist(),
                                              table.column("frame_index").to_pylist())]
    pngs = [{"bytes": _png(frame(e, t)), "path": None} for e, t in rows]
    pq.write_table(table.append_column("observation.images.top", pa.array(pngs)), data)
    info = json.loads((src / "meta/info.json").read_text())
    info["features"]["observation.images.top"] = {"dtype": "image", "shape": [32, 32, 3],
                                                  "names": ["height", "width", "channels"]}
    (src / "meta/info.json").write_text(json.dumps(info))
    stats = import_lerobot(src, tmp_path / "back", progress=False)
    td = _all(stats.root)
    np.testing.assert_array_equal(td[IMAGE].numpy(), np.stack([frame(e, t) for e, t in rows]))  # PNG: lossless
    assert ShardedStorage(stats.root).manifest.column(IMAGE).encoding == "zstd"
    np.testing.assert_array_equal(td["next", *IMAGE][3].numpy(), frame(0, 3))  # the last frame, repeated
