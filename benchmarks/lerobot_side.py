"""LeRobot 0.4.4's own recorder and loader, run in a separate virtualenv that has ``lerobot`` installed.

Used by ``bench_lerobot.py`` (it never imports torchrl_ext; the main venv imports
:func:`time_loader` from here, so both loaders are timed by one loop):

``record ROOT CODEC EPISODES FRAMES SIZE``
    records a dataset at ROOT with ``LeRobotDataset.create`` / ``add_frame`` /
    ``save_episode`` / ``finalize`` (``vcodec=CODEC``: ``h264`` or LeRobot's
    default ``libsvtav1``), :data:`FPS` frames per second: one camera
    ``observation.images.top`` SIZE x SIZE x 3, ``observation.state`` and
    ``action`` float32 [6], two tasks. Prints a JSON line with the seconds it took.
``loader ROOT MODE WORKERS BATCHES``
    samples/s of ``DataLoader(LeRobotDataset(root=ROOT, video_backend="pyav",
    delta_timestamps=...), batch_size=32, shuffle=True, num_workers=WORKERS)``;
    MODE ``frame`` (no deltas) or ``window`` (:data:`DELTA_TIMESTAMPS`). Prints
    a JSON line.
``dump ROOT FILE INDICES``
    the items at INDICES (comma-separated), without and with :data:`DELTA_TIMESTAMPS`,
    as numpy arrays in FILE (``.npz``: ``<mode>/<index>/<key>``).

The scene is synthetic but camera-like: a lit table with a wood grain, a
two-link arm and a cube it pushes, moving smoothly, plus sensor noise.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any

REPO_ID = "bench/lerobot"
FPS = 30
CAMERA = "observation.images.top"
BATCH_SIZE = 32
TASKS = ("push the cube to the left", "push the cube to the right")
DELTA_TIMESTAMPS = {
    CAMERA: [-0.1, 0.0, 0.1],
    "observation.state": [-0.1, 0.0],
    "action": [i / FPS for i in range(10)],
}


def _tree_cpu_s() -> float:
    """CPU seconds (user + system) of this process and its live children (DataLoader workers), from /proc."""
    pids = {str(os.getpid())}
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/children") as f:
            pids.update(f.read().split())
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total / os.sysconf("SC_CLK_TCK")


def time_loader(loader: Any, batches: int, key: str) -> dict[str, Any]:
    """Times ``batches`` batches (at most one epoch's less one) after one warm-up batch (workers started, first
    batch out).

    Returns:
        ``{"samples", "seconds", "samples_per_s", "cpu_ms_per_sample", "items", "shape"}``: the CPU of the
        process and its workers during the timed batches, the items of the dataset and the shape of the
        last batch's ``key``.
    """
    batches = min(batches, len(loader) - 1)
    it = iter(loader)
    next(it)
    cpu0 = _tree_cpu_s()
    t0 = time.perf_counter()
    n = 0
    batch = None
    for _ in range(batches):
        batch = next(it)
        n += batch[key].shape[0]
    dt = time.perf_counter() - t0
    cpu = _tree_cpu_s() - cpu0
    return {"samples": n, "seconds": dt, "samples_per_s": n / dt, "cpu_ms_per_sample": 1e3 * cpu / max(n, 1),
            "items": len(loader.dataset), "shape": list(batch[key].shape) if batch is not None else []}


def scene(episode: int, t: int, size: int, rng: Any) -> Any:
    """uint8 [size, size, 3]: table, arm and cube of ``episode`` at step ``t``, with sensor noise."""
    import numpy as np

    s = size / 128
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    grain = 12 * np.sin(x / (7 * s) + 3 * np.sin(y / (23 * s)) + episode)
    light = 40 * np.exp(-((x - 70 * s) ** 2 + (y - 40 * s) ** 2) / (2 * (60 * s) ** 2))
    base = 110 + grain + light
    img = np.stack([base + 30, base + 5, base - 25], -1)
    phase = 2 * math.pi * t / 200
    a1 = 0.6 + 0.5 * math.sin(phase + episode)
    a2 = 0.9 + 0.7 * math.sin(2 * phase + 0.3 * episode)
    sx, sy = 64 * s, 120 * s
    ex, ey = sx + 45 * s * math.cos(a1), sy - 45 * s * math.sin(a1)
    hx, hy = ex + 35 * s * math.cos(a1 + a2), ey - 35 * s * math.sin(a1 + a2)
    for (x0, y0, x1, y1), color, w in (((sx, sy, ex, ey), (90, 90, 100), 6), ((ex, ey, hx, hy), (150, 150, 160), 4)):
        t_ = np.clip(((x - x0) * (x1 - x0) + (y - y0) * (y1 - y0)) / ((x1 - x0) ** 2 + (y1 - y0) ** 2 + 1e-6), 0, 1)
        near = (x - x0 - t_ * (x1 - x0)) ** 2 + (y - y0 - t_ * (y1 - y0)) ** 2 < (w * s) ** 2
        img[near] = color
    direction = -1 if episode % 2 == 0 else 1
    cx = 64 * s + direction * 30 * s * min(1.0, t / 150) + 8 * s * math.sin(episode)
    cy = 60 * s + 6 * s * math.cos(episode)
    cube = (np.abs(x - cx) < 7 * s) & (np.abs(y - cy) < 7 * s)
    img[cube] = (200, 40 + 3 * episode % 60, 30)
    img += rng.normal(0, 2.0, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def record(root: str, codec: str, episodes: int, frames: int, size: int) -> None:
    import numpy as np
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    vec = {"dtype": "float32", "shape": (6,), "names": [f"joint_{i}" for i in range(6)]}
    features = {"observation.state": dict(vec), "action": dict(vec),
                CAMERA: {"dtype": "video", "shape": (size, size, 3), "names": ["height", "width", "channels"]}}
    t0 = time.perf_counter()
    ds = LeRobotDataset.create(repo_id=REPO_ID, fps=FPS, features=features, root=root, use_videos=True,
                               video_backend="pyav", vcodec=codec)
    rng = np.random.default_rng(0)
    for e in range(episodes):
        steps = np.arange(frames + 1, dtype=np.float32)[:, None]
        joints = np.sin(2 * np.pi * steps / frames * (1 + np.arange(6)) / 3 + e).astype(np.float32)
        for t in range(frames):
            ds.add_frame({"observation.state": joints[t], "action": joints[t + 1],
                          CAMERA: scene(e, t, size, rng), "task": TASKS[e % 2]})
        ds.save_episode()
    ds.finalize()
    print(json.dumps({"record_s": time.perf_counter() - t0, "frames": episodes * frames}))


def _dataset(root: str, mode: str):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset(REPO_ID, root=root, video_backend="pyav",
                          delta_timestamps=DELTA_TIMESTAMPS if mode == "window" else None)


def loader(root: str, mode: str, workers: int, batches: int) -> None:
    import torch
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    dl = DataLoader(_dataset(root, mode), batch_size=BATCH_SIZE, shuffle=True, num_workers=workers, drop_last=True)
    print(json.dumps(time_loader(dl, batches, CAMERA)))


def dump(root: str, path: str, indices: list[int]) -> None:
    import numpy as np
    import torch

    arrays = {}
    for mode in ("frame", "window"):
        ds = _dataset(root, mode)
        for i in indices:
            for k, v in ds[i].items():
                arrays[f"{mode}/{i}/{k}"] = v.numpy() if isinstance(v, torch.Tensor) else np.array(v)
    np.savez(path, **arrays)
    print(json.dumps({"items": 2 * len(indices)}))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    cmd, *rest = sys.argv[1:]
    if cmd == "record":
        record(rest[0], rest[1], int(rest[2]), int(rest[3]), int(rest[4]))
    elif cmd == "loader":
        loader(rest[0], rest[1], int(rest[2]), int(rest[3]))
    elif cmd == "dump":
        dump(rest[0], rest[1], [int(i) for i in rest[2].split(",")])
    else:
        raise SystemExit(f"unknown command {cmd!r}; expected record, loader or dump")
