"""MineStudio's ``segmentation`` item entry from imported segment columns: equal to MineStudio's reader, restated."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

pytest.importorskip("lmdb")
pytest.importorskip("cv2")

from helpers import built_once
from interop.minestudio.minestudio_reference import ReferenceEventDataset, assert_items_match, assert_same, batchify
from interop.minestudio.ms_maker import write_minestudio_dataset

from torchrl_ext.datasets import loader_context
from torchrl_ext.events import EventWindowDataset
from torchrl_ext.events import batchify as our_batchify
from torchrl_ext.format import FormatError
from torchrl_ext.interop.minestudio import close_envs, import_minestudio, rle_encode

pytestmark = pytest.mark.slow  # segmentation items compared with MineStudio's own code


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """Two MineStudio directories with segmentation (``segment/`` and ``segmentation/``) and their imports."""
    def build(base):
        pairs = []
        for k, (lengths, folder) in enumerate([((288, 192, 320), "segment"), ((256,), "segmentation")]):
            src = base / f"src{k}"
            write_minestudio_dataset(src, lengths, names=[f"s{k}-player{e}-{100 + e}" for e in range(len(lengths))],
                                     segment=folder)
            import_minestudio(src, base / f"root{k}", progress=False)
            pairs.append((src, base / f"root{k}"))
        return pairs

    return built_once(tmp_path_factory, "minestudio_segment_items", build)


class SegmentationKernelCallback:  # duck-typed like MineStudio's: its size is `width` x `height`
    name = "segmentation"

    def __init__(self, frame_width=224, frame_height=224):
        self.width, self.height = frame_width, frame_height
        self.read_bias = self.win_bias = 0


IMAGE = {"frame_width": 64, "frame_height": 64}
CASES = {
    "names, past the episode end": (
        dict(modal_kernel_callbacks=["image", "action", "segmentation"],
             modal_kernel_config={"image": IMAGE, "segmentation": {"frame_width": 64, "frame_height": 48}}),
        [("image", IMAGE), ("action", {}), ("segmentation", {"frame_width": 64, "frame_height": 48})],
        dict(win_len=64, bias=60)),
    "object first, full size, previous actions": (
        dict(modal_kernel_callbacks=[SegmentationKernelCallback(640, 360), "image", "action"],
             modal_kernel_config={"image": IMAGE,
                                  "action": {"enable_prev_action": True, "read_bias": -1, "win_bias": 1}}),
        [("segmentation", {"frame_width": 640, "frame_height": 360}), ("image", IMAGE), ("action", {"prev": True})],
        dict(win_len=48, bias=20, split="val", split_ratio=0.5)),
    "default size, frames without points": (
        dict(modal_kernel_callbacks=["image", "segmentation"], modal_kernel_config={"image": IMAGE}),
        [("image", IMAGE), ("segmentation", {"frame_width": 224, "frame_height": 224})],
        dict(win_len=32, event_regex="minecraft.craft")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_items_match_minestudio(dirs, case):
    assert_items_match(dirs, *CASES[case])


def test_the_cases_cover_padding_both_point_dtypes_and_picks(dirs):
    items = []
    for case in CASES:
        ours_args, _, window = CASES[case]
        ds = EventWindowDataset(dataset_dirs=[str(r) for _, r in dirs], **ours_args, **window)
        items += [ds[i]["segmentation"] for i in range(len(ds))]
    assert {list(s)[0] for s in items} == {"obj_id", "event"}  # event first: padded by do_pad
    assert {s["point"].dtype for s in items} == {torch.float32, torch.int64}
    assert {v for s in items for v in s["obj_id"].tolist()} == {-1, 0, 2, 3, 4, 5, 6}  # 1 is read as 3


def test_flat_form_with_enable_segment(dirs):
    ds = EventWindowDataset(dataset_dirs=[str(dirs[0][1])], enable_segment=True, frame_width=64, frame_height=64,
                            win_len=32, event_regex="minecraft.kill", bias=20)
    ref = ReferenceEventDataset([dirs[0][0]], [("image", IMAGE), ("action", {"prev": True}),
                                               ("segmentation", IMAGE)], win_len=32, event_regex="minecraft.kill",
                                bias=20)
    assert len(ds) == len(ref) > 0
    for i in range(len(ref)):
        a, b = ds[i], ref[i]
        assert list(a) == ["image", "env_action", "env_prev_action", "agent_action", "agent_prev_action",
                           "segmentation", "mask", "text", "episode", "timestamp"]
        assert_same(a, b, f"item {i}")


def test_batchify_matches_minestudio(dirs):
    ours_args, _, window = CASES["names, past the episode end"]
    ds = EventWindowDataset(dataset_dirs=[str(r) for _, r in dirs], **ours_args, **window)
    items = [ds[i] for i in range(4)]
    assert_same(our_batchify(items), batchify(items), "batch")
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=1, collate_fn=our_batchify,
                                         multiprocessing_context=loader_context("forkserver"))  # dataset pickled
    batch = next(iter(loader))
    assert_same(batch, batchify(items[:3]), "loader batch")


def _frames_with(keys_per_frame):
    """Per-frame interaction dicts: ``keys_per_frame[t]`` lists the interaction numbers of frame ``t``, in order."""
    mask = np.zeros((360, 640), np.uint8)
    out = []
    for t, keys in enumerate(keys_per_frame):
        frame = {}
        for i in keys:
            mask[:] = 0
            mask[10 * i:10 * i + 5, t:t + 7] = 1
            frame[(i, "minecraft.mine_block:minecraft.dirt")] = {
                "obj_id": i + 2, "rle_mask": rle_encode(mask), "event": f"interaction {i}", "point": (i, t),
                "ori_frame_id": t, "ori_frame_range": (0, 191), "frame_id": t, "frame_range": (0, 191)}
        out.append(frame)
    return out


def _import_with_segments(tmp_path, frames):
    """A one-episode MineStudio directory whose segment chunks hold ``frames``, and its import."""
    import lmdb

    src = tmp_path / "ms"
    write_minestudio_dataset(src, lengths=(len(frames),), names=["p-1"], segment="segment")
    close_envs()
    env = lmdb.open(str(src / "segment" / "part-1"), map_size=1 << 30)
    with env.begin(write=True) as txn:
        for s in range(0, len(frames), 32):
            txn.put(str((0, s)).encode(), pickle.dumps(frames[s:s + 32]))
    env.close()
    import_minestudio(src, tmp_path / "ds", progress=False)
    return src, tmp_path / "ds"


def test_a_pick_is_one_of_minestudios_random_outcomes(tmp_path):
    """Frames 152-167 hold interactions 0 and 1 (0 first), 168-191 only 1. For the event at 153, MineStudio
    walks back from frame 159 (the end of the chunks it reads), inside the overlap, and picks at random; the
    import walked the whole episode and kept 1 there."""
    src, root = _import_with_segments(tmp_path, _frames_with([[]] * 120 + [[0]] * 32 + [[0, 1]] * 16 + [[1]] * 24))
    config = {"frame_width": 64, "frame_height": 36}
    ours = EventWindowDataset(dataset_dirs=[str(root)], modal_kernel_callbacks=["segmentation"],
                              modal_kernel_config={"segmentation": config}, win_len=8)
    first, last = (ReferenceEventDataset([src], [("segmentation", {**config, "choose": choose})], win_len=8)
                   for choose in (lambda keys: keys[0], lambda keys: keys[-1]))
    assert len(ours) == len(first) == len(last) > 0
    differ = [int(ours[i]["timestamp"][0]) for i in range(len(ours))
              if not torch.equal(ours[i]["segmentation"]["obj_id"], first[i]["segmentation"]["obj_id"])]
    assert differ == [145]  # the window of the event at 153; its frame 152 is in the overlap
    for i in range(len(ours)):
        assert_same(ours[i], last[i], f"item {i}")


def test_segmentation_of_a_dataset_imported_without_it(tmp_path):
    src = tmp_path / "ms"
    write_minestudio_dataset(src, lengths=(160,))
    import_minestudio(src, tmp_path / "ds", progress=False)
    with pytest.raises(ValueError, match=r"the 'segmentation' modality was not imported"):
        EventWindowDataset(dataset_dirs=[str(tmp_path / "ds")], enable_segment=True, win_len=8)


@pytest.mark.parametrize("config, match", [
    ({"segmentation": {"frame_size": 64}}, r"the 'segmentation' config names \['frame_size'\]"),
    ({"segmentation": {"frame_width": 0}}, r"segmentation `frame_width` must be a positive int, got 0"),
])
def test_bad_segmentation_settings(dirs, config, match):
    with pytest.raises(ValueError, match=match):
        EventWindowDataset(dataset_dirs=[str(dirs[0][1])], modal_kernel_callbacks=["image", "segmentation"],
                           modal_kernel_config=config, win_len=8)


def test_an_obj_id_minestudio_cannot_read_is_a_format_error(tmp_path):
    _, root = _import_with_segments(tmp_path, _frames_with([[5]] * 160))  # obj_id 7
    ds = EventWindowDataset(dataset_dirs=[str(root)], modal_kernel_callbacks=["segmentation"],
                            modal_kernel_config={}, win_len=4)
    with pytest.raises(FormatError, match=r"segment obj_id 7 at row \d+: MineStudio's reader maps obj_id"):
        ds[0]
