"""Small LeRobot v3.0 datasets written by the real ``lerobot==0.4.4``, and reference items read back by it.

Run in a separate venv holding ``lerobot==0.4.4`` (it pins torch < 2.11, so it
cannot share the main one)::

    HF_HUB_OFFLINE=1 /tmp/lerobot_venv/bin/python tests/interop/lerobot/make_fixtures.py

It rewrites ``tests/interop/lerobot/fixtures/``: one dataset per video codec
(``h264``: LeRobot's ``vcodec="h264"``; ``av1``: its default ``libsvtav1``),
each with 3 episodes at 10 fps of ``observation.state`` float32 [6], ``action``
float32 [6] and the video ``observation.images.top`` 32x32x3, two tasks; the
``av1`` one also has ``next.reward`` and ``next.done``. Everything is made
offline by ``LeRobotDataset.create`` / ``add_frame`` / ``save_episode``. Then
``LeRobotDataset(root=...)`` (``video_backend="pyav"``) reads items back, with
and without ``delta_timestamps``, into ``<name>_reference.json``: numbers as
lists, frames as base64 of ``round(255 * x)`` bytes (CHW, LeRobot's layout);
tests in the main venv compare against it without importing lerobot.

This module imports only numpy at the top, so tests may use :func:`frame`,
:func:`state` and :func:`action`, the values fed to LeRobot, and
:func:`write_generic`, a dataset of this library to export.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FPS = 10
LENGTHS = (23, 31, 26)
TASKS = ("pick up the red cube", "push the blue block", "pick up the red cube")
SIZE = 32
VIDEO_KEY = "observation.images.top"
CODECS = {"h264": "h264", "av1": "libsvtav1"}
ITEM_INDICES = (0, 1, 22, 23, 40, 53, 54, 79)
DELTA_TIMESTAMPS = {
    VIDEO_KEY: [-0.2, 0.0],
    "observation.state": [-0.1, 0.0],
    "action": [0.0, 0.1, 0.2, 0.3],
}


def frame(episode: int, t: int) -> np.ndarray:
    """uint8 [32, 32, 3]: a gradient background and an 8x8 square that moves one pixel per step."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    img = np.stack([(x * 8 + 40 * episode) % 256, (y * 8) % 256, np.full_like(x, 60 + 50 * episode)], -1)
    top, left = (3 * episode + t) % (SIZE - 8), (2 * t) % (SIZE - 8)
    img[top:top + 8, left:left + 8] = (250, 250 - 20 * episode, 10)
    return img.astype(np.uint8)


def state(episode: int, t: int) -> np.ndarray:
    """float32 [6]: the episode, the step, and four values of both."""
    return np.array([episode, t, 0.5 * t, episode - t, np.sin(t), 0.25 * episode * t], np.float32)


def action(episode: int, t: int) -> np.ndarray:
    """float32 [6]: the next state's first values, scaled."""
    return (state(episode, t + 1) * np.float32(0.5)).astype(np.float32)


GENERIC_LENGTHS = (9, 14, 11)
GENERIC_TASKS = ("stack the cube", "open the drawer", "lift the cube")


def write_generic(root: Path) -> None:
    """A dataset of this library (main venv): ``observation/image`` frames (zstd), ``observation/state``,
    ``action``, rewards ``e + t / 2`` and a ``task`` per episode."""
    from torchrl_ext import ShardWriter

    with ShardWriter.create(root, encodings={("observation", "image"): "zstd"}) as w:
        for e, n in enumerate(GENERIC_LENGTHS):
            img = np.stack([frame(e, t) for t in range(n + 1)])
            st = np.stack([state(e, t) for t in range(n + 1)])
            done = np.zeros((n, 1), bool)
            done[-1] = True
            w.add_episode({"observation": {"image": img[:-1], "state": st[:-1]},
                           "action": np.stack([action(e, t) for t in range(n)]),
                           "next": {"observation": {"image": img[1:], "state": st[1:]},
                                    "reward": np.arange(n, dtype=np.float32)[:, None] * 0.5 + e, "done": done}},
                          metadata={"task": GENERIC_TASKS[e]})


def _features(name: str) -> dict:
    vec = {"dtype": "float32", "shape": (6,), "names": [f"j{i}" for i in range(6)]}
    out = {"observation.state": dict(vec), "action": dict(vec),
           VIDEO_KEY: {"dtype": "video", "shape": (SIZE, SIZE, 3), "names": ["height", "width", "channels"]}}
    if name == "av1":
        out["next.reward"] = {"dtype": "float32", "shape": (1,), "names": None}
        out["next.done"] = {"dtype": "bool", "shape": (1,), "names": None}
    return out


def _record(name: str, root: Path) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset.create(repo_id=f"torchrl_ext/{name}", fps=FPS, features=_features(name), root=root,
                               use_videos=True, video_backend="pyav", vcodec=CODECS[name])
    for e, n in enumerate(LENGTHS):
        for t in range(n):
            values = {"observation.state": state(e, t), "action": action(e, t), VIDEO_KEY: frame(e, t),
                      "task": TASKS[e]}
            if name == "av1":
                values["next.reward"] = np.array([float(t == n - 1) + 0.1 * e], np.float32)
                values["next.done"] = np.array([t == n - 1 and e != 1])
            ds.add_frame(values)
        ds.save_episode()
    ds.finalize()


def _value(v):
    import torch

    if isinstance(v, torch.Tensor):
        if v.dtype == torch.bool:
            return {"bool": v.tolist()}
        return {"dtype": str(v.dtype).removeprefix("torch."), "shape": list(v.shape), "values": v.tolist()}
    return v


def _frames(v) -> dict:
    scaled = (v.numpy().astype(np.float64) * 255.0)
    as_int = np.round(scaled)
    if np.abs(scaled - as_int).max() > 1e-3:
        raise AssertionError("LeRobot returned frames that are not k / 255")
    return {"frames_chw_base64": base64.b64encode(as_int.astype(np.uint8).tobytes()).decode(),
            "shape": list(v.shape)}


def _items(ds, indices) -> list[dict]:
    out = []
    for i in indices:
        item = ds[i]
        out.append({k: (_frames(v) if k == VIDEO_KEY else _value(v)) for k, v in sorted(item.items())})
    return out


def _reference(name: str, root: Path) -> dict:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    plain = LeRobotDataset(f"torchrl_ext/{name}", root=root, video_backend="pyav")
    delta = LeRobotDataset(f"torchrl_ext/{name}", root=root, video_backend="pyav",
                           delta_timestamps=DELTA_TIMESTAMPS)
    import lerobot

    return {"lerobot_version": lerobot.__version__ if hasattr(lerobot, "__version__") else "0.4.4",
            "av_version": __import__("av").__version__, "len": len(plain), "fps": FPS,
            "items": dict(zip(map(str, ITEM_INDICES), _items(plain, ITEM_INDICES))),
            "delta_timestamps": DELTA_TIMESTAMPS,
            "delta_items": dict(zip(map(str, ITEM_INDICES), _items(delta, ITEM_INDICES)))}


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for name in CODECS:
        root = FIXTURES / name
        if root.exists():
            shutil.rmtree(root)
        _record(name, root)
        ref = _reference(name, root)
        (FIXTURES / f"{name}_reference.json").write_text(json.dumps(ref, indent=1, sort_keys=True) + "\n")
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        print(f"{root}: {len(LENGTHS)} episodes, {sum(LENGTHS)} frames, {size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
