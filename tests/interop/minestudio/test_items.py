"""MineStudio-compatible items from an imported dataset: same windows, keys, dtypes and values as MineStudio."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("lmdb")
pytest.importorskip("cv2")

from helpers import built_once
from interop.minestudio.minestudio_reference import (
    ReferenceEventDataset,
    assert_items_match,
    assert_same,
    batchify,
    naive_agent_action,
)
from interop.minestudio.ms_maker import write_minestudio_dataset
from torchrl.data import TensorDictReplayBuffer

from torchrl_ext import ShardedStorage
from torchrl_ext.datasets import loader_context
from torchrl_ext.events import EventWindowDataset
from torchrl_ext.events import batchify as our_batchify
from torchrl_ext.interop.minestudio.vpt_actions import BUTTONS, agent_action
from torchrl_ext.samplers import EventSliceSampler
from torchrl_ext.interop.minestudio import MineStudioItems, import_minestudio


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """Two MineStudio directories and their imports (one root each)."""
    def build(base):
        pairs = []
        for k, lengths in enumerate([(288, 192, 320), (256,)]):
            src = base / f"src{k}"
            write_minestudio_dataset(src, lengths, names=[f"d{k}-player{e}-{100 + e}" for e in range(len(lengths))])
            import_minestudio(src, base / f"root{k}", progress=False)
            pairs.append((src, base / f"root{k}"))
        return pairs

    return built_once(tmp_path_factory, "minestudio_items", build)


class ImageKernelCallback:  # duck-typed like MineStudio's callback objects
    name = "image"

    def __init__(self, frame_width=128, frame_height=128):
        self.frame_width, self.frame_height = frame_width, frame_height


CASES = {
    "image+action": (
        dict(modal_kernel_callbacks=["image", "action"],
             modal_kernel_config={"image": {"frame_width": 64, "frame_height": 64}}),
        [("image", {"frame_width": 64, "frame_height": 64}), ("action", {})],
        dict(win_len=64, event_regex="minecraft.(mine|kill)")),
    "resized, previous actions, val split": (
        dict(modal_kernel_callbacks=[ImageKernelCallback(48, 32), "action"],
             modal_kernel_config={"action": {"enable_prev_action": True, "read_bias": -1, "win_bias": 1}}),
        [("image", {"frame_width": 48, "frame_height": 32}), ("action", {"prev": True})],
        dict(win_len=48, bias=40, min_nearby=20, max_within=4, split="val", split_ratio=0.5)),
    "registered names": (  # MineStudio's Registers names, settings under the modality's key
        dict(modal_kernel_callbacks=["ImageKernelCallback", "ActionKernelCallback"],
             modal_kernel_config={"image": {"frame_width": 64, "frame_height": 48}}),
        [("image", {"frame_width": 64, "frame_height": 48}), ("action", {})],
        dict(win_len=32, event_regex="minecraft.kill")),
    "action first": (
        dict(modal_kernel_callbacks=["action", "image"], modal_kernel_config={}),
        [("action", {}), ("image", {"frame_width": 128, "frame_height": 128})],
        dict(win_len=32, bias=30, event_regex="minecraft.craft")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_items_match_minestudio(dirs, case):
    assert_items_match(dirs, *CASES[case])


def test_some_windows_are_padded(dirs):
    ours_args, _, window = CASES["resized, previous actions, val split"]
    ds = EventWindowDataset(dataset_dirs=[str(r) for _, r in dirs], **ours_args, **{**window, "split": "train"})
    _, mask = ds.windows.rows_and_mask()
    assert not mask.all() and isinstance(ds.plugin_items, MineStudioItems)


def test_flat_form_with_contractor_info(dirs):
    ds = EventWindowDataset(dataset_dirs=[str(dirs[0][1])], enable_video=True, enable_action=True,
                            enable_contractor_info=True, frame_width=64, frame_height=64, win_len=32,
                            event_regex="minecraft.kill", bias=20)
    ref = ReferenceEventDataset([dirs[0][0]], [("image", {"frame_width": 64, "frame_height": 64}),
                                               ("action", {"prev": True}), ("meta_info", {})],
                                win_len=32, event_regex="minecraft.kill", bias=20)
    assert len(ds) == len(ref) > 0
    for i in range(len(ref)):
        a, b = ds[i], ref[i]
        assert list(a) == ["image", "env_action", "env_prev_action", "agent_action", "agent_prev_action",
                           "meta_info", "mask", "text", "episode", "timestamp"]
        meta_a, meta_b = a.pop("meta_info"), b.pop("meta_info")
        assert_same(a, b, f"item {i}")
        for field in ("pitch", "yaw", "tick", "isGuiOpen"):
            want = [0 if v is None else v for v in meta_b[field]]
            assert meta_a[field].tolist() == pytest.approx(want), field


def test_batchify_matches_minestudio(dirs):
    ours_args, _, window = CASES["resized, previous actions, val split"]
    ds = EventWindowDataset(dataset_dirs=[str(r) for _, r in dirs], **ours_args, **window)
    items = [ds[i] for i in range(min(4, len(ds)))]
    assert_same(our_batchify(items), batchify(items), "batch")
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=our_batchify)
    assert_same(next(iter(loader)), batchify(items[:2]), "loader batch")


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])  # 2: a fork server importing torch
def test_loader_batches_equal_minestudio_items(dirs, workers):
    ours_args, callbacks, window = CASES["image+action"]
    ds = EventWindowDataset(dataset_dirs=[str(r) for _, r in dirs], **ours_args, **window)
    ref = ReferenceEventDataset([src for src, _ in dirs], callbacks, **window)
    # workers from the fork server get the dataset pickled, as spawned ones do, without importing torch each
    context = loader_context("forkserver") if workers else None
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=workers, collate_fn=our_batchify,
                                         multiprocessing_context=context)
    for k, batch in enumerate(loader):  # batches of one root and batches mixing both
        want = batchify([ref[i] for i in range(3 * k, min(3 * k + 3, len(ref)))])
        assert_same(batch, want, f"batch {k}")


def test_frames_of_one_batch_are_not_copied(dirs):
    ds = EventWindowDataset(dataset_dirs=[str(dirs[0][1])], **CASES["image+action"][0], **CASES["image+action"][2])
    items = ds.__getitems__([0, 1, 2])
    batch = our_batchify(items)
    assert batch["image"].data_ptr() == items[0]["image"].data_ptr()
    assert torch.equal(batch["image"], torch.stack([it["image"] for it in items]))
    assert torch.equal(our_batchify([items[2], items[0]])["image"], torch.stack([items[2]["image"], items[0]["image"]]))


def test_same_windows_through_the_sampler(dirs):
    root = dirs[0][1]
    options = dict(compat="minestudio", win_len=32, event_regex="minecraft.mine", split="train")
    ds = EventWindowDataset(root, **options)
    storage = ShardedStorage(root)
    sampler = EventSliceSampler(storage, **options)
    rb = TensorDictReplayBuffer(storage=storage, sampler=sampler, batch_size=32 * 4)
    batch = rb.sample().reshape(4, 32)
    rows, _ = ds.windows.rows_and_mask()
    windows = {tuple(r) for r in rows.tolist()}
    first, _ = storage.episode_bounds
    got = first[batch["episode"].numpy()] + batch["step"].numpy()
    assert all(tuple(r) in windows for r in got.tolist())
    assert batch["image"].shape == (4, 32, 64, 64, 3)


def test_compat_items_only_for_imports(tmp_path):
    from torchrl_ext.events import EventIndex
    from torchrl_ext.synthetic import write_synthetic

    root = write_synthetic(tmp_path / "ds", episodes=2, length=200, obs_shape=(2,), events_every=50)
    EventIndex.build(root)
    item = EventWindowDataset(root, compat="minestudio", win_len=4, event_regex="tick")[0]
    assert "observation" in item and "image" not in item
    with pytest.raises(ValueError, match=r"not written by the MineStudio importer"):
        EventWindowDataset(dataset_dirs=[str(root)], win_len=4)


def test_raw_minestudio_directory_asks_for_an_import(dirs):
    with pytest.raises(ValueError, match=r"is a MineStudio dataset directory; import it first"):
        EventWindowDataset(dataset_dirs=[str(dirs[0][0])], win_len=8)


@pytest.mark.parametrize("kwargs, match", [
    (dict(modal_kernel_callbacks=["image"], modal_kernel_config={"image": {"enable_video_aug": True}}),
     r"random augmentation is not reproduced"),
    (dict(modal_kernel_callbacks=["action"], modal_kernel_config={"action": {"enable_prev_action": True}}),
     r"read_bias/win_bias \(0, 0\) with enable_prev_action=True is not supported"),
    (dict(event_paths=["/x"]), r"`event_paths` is not supported"),
    (dict(modal_kernel_callbacks=["VideoKernelCallback"], modal_kernel_config={}),
     r"entry 'VideoKernelCallback' is not one of MineStudio's 'image', .* e.g. 'ImageKernelCallback'"),
    (dict(frame_width=0), r"`frame_width` must be a positive int, got 0"),
])
def test_unsupported_minestudio_arguments(dirs, kwargs, match):
    with pytest.raises(ValueError, match=match):
        EventWindowDataset(dataset_dirs=[str(dirs[0][1])], win_len=8, **kwargs)


@pytest.mark.parametrize("flat", [dict(frame_width=96, frame_height=64), dict(enable_video=False),
                                  dict(enable_segment=True)])
def test_flat_arguments_beside_callbacks_are_refused_not_ignored(dirs, flat):
    """MineStudio 1.1.6 raises TypeError for 1.0's flat arguments; silently returning 128x128 frames would lie."""
    with pytest.raises(TypeError, match=r"are MineStudio 1.0 arguments; with `modal_kernel_callbacks` \(1.1\) set "
                                        r"them per callback, e.g. modal_kernel_config="):
        EventWindowDataset(dataset_dirs=[str(dirs[0][1])], modal_kernel_callbacks=["image"], win_len=8, **flat)
    ds = EventWindowDataset(dataset_dirs=[str(dirs[0][1])], modal_kernel_callbacks=["image"], win_len=8,
                            modal_kernel_config={"image": {"frame_width": 96, "frame_height": 64}})
    assert tuple(ds[0]["image"].shape) == (8, 64, 96, 3)


@pytest.mark.parametrize("seed", range(3))
def test_vpt_mapping_matches_the_definition(seed):
    rng = np.random.default_rng(seed)
    n = 400
    env = {b: (rng.random(n) < 0.3).astype(np.int64) for b in BUTTONS}
    env["inventory"] = (rng.random(n) < 0.05).astype(np.int64)
    env["camera"] = rng.normal(0, 8, (n, 2)) * (rng.random((n, 1)) < 0.6)
    got, want = agent_action(env), naive_agent_action(env)
    assert all(np.array_equal(got[k], want[k]) and got[k].dtype == np.int64 for k in want)
