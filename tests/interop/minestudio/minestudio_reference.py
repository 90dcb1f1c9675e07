"""MineStudio 1.1.6's ``EventDataset`` item, restated in plain Python over its raw LMDB layout.

Follows ``minestudio/data/minecraft/dataset_event.py`` (``EventKernel.filter_out``,
``build_items``, ``locate_item``, ``__getitem__``, ``to_tensor``) and
``core.py`` (``ModalKernel.read_frames``: chunks from ``start // c * c`` to
``end // c * c``, slice, left/right padding with zeros, mask of the last
modality read), the image, action, meta_info and segmentation callbacks
(``SegmentationKernelCallback.do_merge``/``do_slice``/``do_pad``, its random
pick of an interaction made by a ``choose`` function), and its ``batchify``;
the VPT mapping comes from :func:`naive_agent_action` (one row at a time,
like ``CameraHierarchicalMapping.from_factored``).
"""

from __future__ import annotations

import io
import itertools
import pickle
import re
from pathlib import Path

import av
import cv2
import lmdb
import numpy as np
import torch

BUTTONS = ["attack", "back", "forward", "jump", "left", "right", "sneak", "sprint", "use", "drop", "inventory",
           *(f"hotbar.{i}" for i in range(1, 10))]
GROUPS = {"hotbar": ["none"] + [f"hotbar.{i}" for i in range(1, 10)], "fore_back": ["none", "forward", "back"],
          "left_right": ["none", "left", "right"], "sprint_sneak": ["none", "sprint", "sneak"], "use": ["none", "use"],
          "drop": ["none", "drop"], "attack": ["none", "attack"], "jump": ["none", "jump"],
          "camera": ["none", "camera"]}
COMBOS = {c: i for i, c in enumerate(list(itertools.product(*GROUPS.values())) + ["inventory"])}


def naive_agent_action(env: dict, n_bins=11, binsize=2, maxval=10, mu=10) -> dict:
    n = env["camera"].shape[0]
    xy = np.clip(env["camera"], -maxval, maxval) / maxval
    xy = np.sign(xy) * (np.log(1.0 + mu * np.abs(xy)) / np.log(1.0 + mu)) * maxval
    cam = np.round((xy + maxval) / binsize).astype(np.int64)
    buttons, cameras = [], []
    for i in range(n):
        pressed = {b: env.get(b, np.zeros(n))[i] for b in BUTTONS}
        choice = []
        for g, opts in GROUPS.items():
            if g == "camera":
                choice.append("none" if (cam[i] == n_bins // 2).all() else "camera")
                continue
            on = [b for b in opts[1:] if pressed[b] != 0]
            if g in ("fore_back", "left_right") and len(on) == 2:
                on = []
            choice.append(on[-1] if on else "none")
        key = "inventory" if pressed["inventory"] == 1 else tuple(choice)
        buttons.append(COMBOS[key])
        c = (n_bins // 2, n_bins // 2) if key == "inventory" else (cam[i][0], cam[i][1])
        cameras.append(c[0] * n_bins + c[1])
    return {"buttons": np.array(buttons)[:, None], "camera": np.array(cameras)[:, None]}


def batchify(batch):
    """MineStudio's ``minestudio/data/minecraft/utils.py`` collate."""
    example = batch[0]
    if isinstance(example, dict):
        return {k: batchify([b[k] for b in batch]) for k in example}
    if isinstance(example, torch.Tensor):
        return torch.stack(batch, dim=0)
    if isinstance(example, int):
        return torch.tensor(batch, dtype=torch.int32)
    if isinstance(example, float):
        return torch.tensor(batch, dtype=torch.float32)
    return batch


DIRS = {"image": ("image", "video"), "action": ("action",), "meta_info": ("meta_info", "contractor_info"),
        "segmentation": ("segment", "segmentation")}
SEG_RE_MAP = {0: 0, 1: 3, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6}


def rle_decode(mask_rle, shape):
    """``SegmentationKernelCallback.rle_decode``, one run at a time."""
    s = mask_rle.split()
    starts, lengths = [np.asarray(x, dtype=int) for x in (s[0:][::2], s[1:][::2])]
    starts -= 1
    ends = starts + lengths
    binary_mask = np.zeros(shape[0] * shape[1], dtype=np.uint8)
    for lo, hi in zip(starts, ends):
        binary_mask[lo:hi] = 1
    return binary_mask.reshape(shape)


def segment_merge(raw_frames, width, height, choose):
    """``do_merge`` over per-frame interaction dicts; ``choose(keys)`` stands for its ``random.choice``."""
    n = len(raw_frames)
    res = {"obj_id": [-1] * n, "obj_mask": [np.zeros((height, width), np.uint8) for _ in range(n)],
           "event": [""] * n, "point": [np.array((-1, -1)) for _ in range(n)], "frame_id": [-1] * n,
           "frame_range": [np.array((-1, -1)) for _ in range(n)]}
    last = None
    for i in range(n - 1, -1, -1):
        if len(raw_frames[i]) == 0:
            continue
        if last is None or last not in raw_frames[i]:
            last = choose(list(raw_frames[i].keys()))
        c = raw_frames[i][last]
        res["obj_id"][i] = SEG_RE_MAP[c["obj_id"]]
        res["obj_mask"][i] = cv2.resize(rle_decode(c["rle_mask"], (360, 640)), (width, height),
                                        interpolation=cv2.INTER_NEAREST)
        res["event"][i] = c["event"]
        if c["point"] is not None:
            res["point"][i] = np.array(c["point"]) / np.array([360.0, 640.0])
        res["frame_id"][i] = c["frame_id"]
        res["frame_range"][i] = np.array(c["frame_range"])
    return {k: v if k == "event" else np.array(v) for k, v in res.items()}


def segment_pad(d, k, left, width, height):
    """``do_pad``: a new dict, ``event`` first."""
    pads = {"obj_id": np.zeros(k, np.int32), "obj_mask": np.zeros((k, height, width), np.uint8),
            "point": np.zeros((k, 2), np.int32) - 1, "frame_id": np.zeros(k, np.int32) - 1,
            "frame_range": np.zeros((k, 2), np.int32) - 1}
    out = {"event": [""] * k + d["event"] if left else d["event"] + [""] * k}
    for key, pad in pads.items():
        out[key] = np.concatenate([pad, d[key]] if left else [d[key], pad], axis=0)
    return out


class ReferenceEventDataset:
    """``callbacks``: ``[("image", {"frame_width", "frame_height"}), ("action", {"prev": bool}), ("meta_info", {}),
    ("segmentation", {"frame_width", "frame_height", "choose"})]`` (``choose`` default: the first key)."""

    def __init__(self, dataset_dirs, callbacks, win_len=1, skip_frame=1, split="train", split_ratio=0.8, bias=0,
                 event_regex="", min_nearby=None, max_within=None):
        self.callbacks, self.win_len, self.skip_frame, self.bias = callbacks, win_len, skip_frame, bias
        kernels = [self._event_kernel(Path(d) / "event", event_regex, min_nearby, max_within) for d in dataset_dirs]
        names = sorted(set().union(*kernels))
        self.items = []
        for name in names:
            pool = [it for k in kernels for it in k.get(name, [])]
            cut = int(len(pool) * split_ratio)
            self.items += [(name, *it) for it in (pool[:cut] if split == "train" else pool[cut:])]
        self.episodes = {}
        for d in sorted(dataset_dirs):
            for mod, _ in callbacks:
                folder = next(Path(d) / n for n in DIRS[mod] if (Path(d) / n).is_dir())
                for part in folder.iterdir():
                    env = lmdb.open(str(part), readonly=True, lock=False)
                    with env.begin() as txn:
                        cs = pickle.loads(txn.get(b"__chunk_size__"))
                        for info in pickle.loads(txn.get(b"__chunk_infos__")):
                            self.episodes.setdefault(mod, {})[info["episode"]] = (str(part), info["episode_idx"],
                                                                                  info["num_frames"])
                    env.close()
        self.chunk_size = cs

    @staticmethod
    def _event_kernel(path, regex, min_nearby, max_within):
        env = lmdb.open(str(path), readonly=True, lock=False)
        with env.begin() as txn:
            info = pickle.loads(txn.get(b"__event_info__"))
            book = {v: k for k, v in pickle.loads(txn.get(b"__codebook__")).items()}
            out, last = {}, {}
            for name in sorted(e for e in info if re.match(regex, e)):
                out[name] = []
                for i in range(info[name]["__num_items__"]):
                    eps, t, v = pickle.loads(txn.get(str((name, i)).encode()))
                    eps = book[eps]
                    if t < 128:
                        continue
                    key = f"{eps}:{name}"
                    last.setdefault(key, -100000)
                    if min_nearby is not None and t - last[key] <= min_nearby:
                        continue
                    if max_within is not None and len(out[name]) >= max_within:
                        break
                    last[key] = t
                    out[name].append((eps, t))
        env.close()
        return out

    def __len__(self):
        return len(self.items)

    def _chunks(self, mod, eps, start, end):
        path, idx, _ = self.episodes[mod][eps]
        env = lmdb.open(path, readonly=True, lock=False)
        with env.begin() as txn:
            out = [txn.get(str((idx, c)).encode()) for c in range(start, end + self.chunk_size, self.chunk_size)]
        env.close()
        return out

    def _read(self, mod, settings, eps, start, win_len):
        prev = mod == "action" and settings.get("prev", False)
        if prev:
            start, win_len = start - 1, win_len + 1
        n = self.episodes[mod][eps][2]
        end = min(start + win_len * self.skip_frame - 1, n - 1)
        pad_left = -start if start < 0 else 0
        start = max(start, 0)
        cs = self.chunk_size
        raw = self._chunks(mod, eps, start // cs * cs, end // cs * cs)
        bias = start // cs * cs
        sl = slice(start - bias, end - bias + 1, self.skip_frame)
        mask = np.ones(end - start + 1, np.uint8)
        if mod == "image":
            w, h = settings["frame_width"], settings["frame_height"]
            frames = []
            for data in raw:
                with av.open(io.BytesIO(data)) as c:
                    for f in c.decode(video=0):
                        f = f.to_ndarray(format="rgb24")
                        frames.append(f if f.shape[:2] == (h, w) else cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR))
            data = np.array(frames)[sl]
            pad = lambda d, k, left: np.concatenate(
                [np.zeros((k, *d.shape[1:]), np.uint8), d] if left else [d, np.zeros((k, *d.shape[1:]), np.uint8)])
        elif mod == "action":
            chunks = [pickle.loads(r) for r in raw]
            data = {k: np.concatenate([c[k] for c in chunks])[sl] for k in chunks[0]}
            pad = lambda d, k, left: {key: np.concatenate(
                [np.zeros((k, *v.shape[1:]), np.uint8), v] if left else [v, np.zeros((k, *v.shape[1:]), np.uint8)])
                for key, v in d.items()}
        elif mod == "segmentation":
            w, h = settings["frame_width"], settings["frame_height"]
            merged = segment_merge([f for r in raw for f in pickle.loads(r)], w, h,
                                   settings.get("choose", lambda keys: keys[0]))
            data = {k: v[sl] for k, v in merged.items()}
            pad = lambda d, k, left: segment_pad(d, k, left, w, h)
        else:
            records = [r for raw_c in raw for r in pickle.loads(raw_c)]
            data = {k: [r[k] for r in records][sl] for k in records[0]}
            pad = lambda d, k, left: {key: ([None] * k + v if left else v + [None] * k)
                                      for key, v in d.items()}
        if pad_left:
            data = pad(data, pad_left, True)
            mask = np.concatenate([np.zeros(pad_left, np.uint8), mask])
        if win_len - len(mask) > 0:
            k = win_len - len(mask)
            data = pad(data, k, False)
            mask = np.concatenate([mask, np.zeros(k, np.uint8)])
        out = {mod: data, f"{mod}_mask": mask}
        if mod == "action":
            action = out.pop("action")
            if not prev:
                out["env_action"] = action
                out["agent_action"] = naive_agent_action(action)
            else:
                cur = {k: v[1:] for k, v in action.items()}
                before = {k: v[:-1] for k, v in action.items()}
                out["env_action"], out["env_prev_action"] = cur, before
                out["agent_action"], out["agent_prev_action"] = naive_agent_action(cur), naive_agent_action(before)
                out["action_mask"] = np.ones(len(cur["attack"]), np.uint8)
        return out

    def __getitem__(self, idx):
        name, eps, t = self.items[idx]
        start = max(t - self.win_len + self.bias, 0)
        item = {}
        for mod, settings in self.callbacks:
            item.update(self._read(mod, settings, eps, start, self.win_len))
        for key in list(item):
            if key.endswith("mask"):
                mask = item.pop(key)
        item["mask"] = mask
        item["text"] = name.replace("minecraft.", "")
        item["episode"] = eps
        item["timestamp"] = np.arange(start, start + self.win_len, self.skip_frame)
        return _to_tensor(item)


def assert_same(a, b, path="item"):
    """``a`` (ours) equals ``b`` (the reference) key for key, in the same key order, dtypes and shapes."""
    if isinstance(b, dict):
        assert isinstance(a, dict) and list(a) == list(b), (path, list(a), list(b))
        for k in b:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(b, torch.Tensor):
        assert isinstance(a, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, (path, a.dtype, b.dtype,
                                                                                         a.shape, b.shape)
        assert torch.equal(a, b), path
    else:
        assert a == b, (path, a, b)


def assert_items_match(dirs, ours_args: dict, callbacks: list, window: dict) -> None:
    """Every item of our ``EventWindowDataset`` over the imports equals the reference's over the sources.

    Args:
        dirs: ``[(MineStudio directory, imported root), ...]``.
        ours_args: our constructor's MineStudio arguments (callbacks and their config).
        callbacks: the reference's ``[(modality, settings), ...]``.
        window: window arguments given to both.
    """
    from torchrl_ext.events import EventWindowDataset

    ours = EventWindowDataset(dataset_dirs=[str(r) for _, r in dirs], **ours_args, **window)
    ref = ReferenceEventDataset([src for src, _ in dirs], callbacks, **window)
    assert len(ours) == len(ref) > 0
    for i in range(len(ref)):
        assert_same(ours[i], ref[i], f"item {i}")


def _to_tensor(item):
    if isinstance(item, np.ndarray):
        t = torch.from_numpy(item)
        return t.float() if t.dtype == torch.float64 else t
    if isinstance(item, list):
        return [_to_tensor(v) for v in item]
    if isinstance(item, dict):
        return {k: _to_tensor(v) for k, v in item.items()}
    return item
