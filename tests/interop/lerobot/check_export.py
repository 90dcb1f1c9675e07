"""Datasets written by ``export_lerobot``, opened by the real ``lerobot==0.4.4`` and compared frame by frame.

Two steps, two venvs (``lerobot`` pins torch < 2.11)::

    .venv/bin/python tests/interop/lerobot/check_export.py write /tmp/lerobot_export
    HF_HUB_OFFLINE=1 /tmp/lerobot_venv/bin/python tests/interop/lerobot/check_export.py check /tmp/lerobot_export

``write`` (main venv) exports three datasets under the directory, each with
``expected.npz``, the values this library reads for every frame:

* ``roundtrip``: the committed h264 fixture imported, then exported (lossless);
* ``generic``: a dataset written here (nested ``observation/image`` frames as
  zstd, ``observation/state``, ``action``, TED rewards and flags, a ``task``
  per episode), exported whole;
* ``view``: the episodes of ``generic`` whose task matches ``'%cube%'``;
* ``lossy``: ``generic`` with lossy video (``crf=23``, yuv420p): LeRobot's decoded
  frames against this library's import of the same file.

``check`` (LeRobot's venv) opens each with ``LeRobotDataset(repo_id, root=...)``
(``video_backend="pyav"``) and compares every frame's features, frames
(``round(255 * x)``), ``task``, ``episode_index``, ``frame_index``, ``index`` and
``timestamp``; then items with ``delta_timestamps`` against the same rule
applied to the expected arrays. It prints what it compared and exits 1 on the
first difference.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FPS = 10
DELTAS = {"action": [-0.1, 0.0, 0.2], "observation.state": [-0.2, 0.0]}


def _expected(out: Path, fps: int) -> None:
    """Every frame of the exported ``out`` as this library reads it back (its own importer)."""
    from torchrl_ext.interop.lerobot import LeRobotFrames, import_lerobot

    back = out.parent / f"{out.name}-imported"
    import_lerobot(out, back, progress=False)
    frames = LeRobotFrames(back)
    items = frames.__getitems__(list(range(len(frames))))
    arrays = {}
    for key in items[0]:
        if key == "task":
            arrays[key] = np.asarray([it[key] for it in items])
        elif key.startswith("observation.image"):
            arrays[key] = np.stack([np.round(it[key].numpy() * 255).astype(np.uint8) for it in items])
        else:
            arrays[key] = np.stack([it[key].numpy() for it in items])
    np.savez_compressed(out / "expected.npz", **arrays)
    shutil.rmtree(back)


def write(base: Path) -> int:
    from make_fixtures import write_generic  # this folder

    from torchrl_ext import ShardedStorage
    from torchrl_ext.interop.lerobot import export_lerobot, import_lerobot
    from torchrl_ext.storages import EpisodeView

    base.mkdir(parents=True, exist_ok=True)
    work = base / "work"
    shutil.rmtree(work, ignore_errors=True)
    import_lerobot(HERE / "fixtures" / "h264", work / "h264", progress=False)
    write_generic(work / "generic")
    for name, source, crf in (("roundtrip", ShardedStorage(work / "h264"), 0),
                              ("generic", ShardedStorage(work / "generic"), 0),
                              ("view", EpisodeView(work / "generic", "task LIKE '%cube%'"), 0),
                              ("lossy", ShardedStorage(work / "generic"), 23)):
        out = base / name
        shutil.rmtree(out, ignore_errors=True)
        export_lerobot(source, out, fps=FPS, crf=crf, progress=False)
        _expected(out, FPS)
        print(f"wrote {out}")
    shutil.rmtree(work)
    return 0


def _fail(msg: str) -> int:
    print(f"MISMATCH: {msg}")
    return 1


def _check_one(root: Path) -> int:
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    exp = dict(np.load(root / "expected.npz"))
    ds = LeRobotDataset(f"check/{root.name}", root=root, video_backend="pyav")
    n = len(exp["index"])
    if len(ds) != n:
        return _fail(f"{root}: LeRobot sees {len(ds)} frames, expected {n}")
    compared = 0
    for i in range(n):
        item = ds[i]
        for key, values in exp.items():
            got = item[key]
            if key == "task":
                ok = got == str(values[i])
            elif key.startswith("observation.image"):
                ok = np.array_equal(np.round(got.numpy() * 255).astype(np.uint8), values[i])
            else:
                ok = np.array_equal(got.numpy(), values[i]) and got.numpy().dtype == values[i].dtype
            if not ok:
                return _fail(f"{root}: frame {i} key {key!r}: LeRobot {got!r:.200}, expected {values[i]!r:.200}")
            compared += 1
    deltas = {**DELTAS, **{k: [-0.2, 0.0] for k in exp if k.startswith("observation.image")}}
    ds_delta = LeRobotDataset(f"check/{root.name}", root=root, video_backend="pyav", delta_timestamps=deltas)
    ep, idx = exp["episode_index"], exp["index"]
    for i in range(n):
        item = ds_delta[i]
        lo, hi = idx[ep == ep[i]].min(), idx[ep == ep[i]].max()
        for key, d in deltas.items():
            want = i + np.round(np.asarray(d) * FPS).astype(int)
            q = np.clip(want, lo, hi)
            got = item[key].numpy()
            if key.startswith("observation.image"):
                got = np.round(got * 255).astype(np.uint8)
            if not np.array_equal(got, exp[key][q]) or \
                    item[f"{key}_is_pad"].tolist() != ((want < lo) | (want > hi)).tolist():
                return _fail(f"{root}: frame {i} delta {key!r}: {item[key]} vs {exp[key][q]}")
            compared += 1
    print(f"{root.name}: LeRobot {ds.meta.info['codebase_version']} opened {ds.num_episodes} episodes, {n} frames; "
          f"{compared} values equal ({sorted(exp)}, and with delta_timestamps {deltas}); "
          f"torch {torch.__version__}")
    return 0


def check(base: Path) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import lerobot  # noqa: F401

    for name in ("roundtrip", "generic", "view", "lossy"):
        code = _check_one(base / name)
        if code:
            return code
    meta = json.loads((base / "generic" / "meta" / "info.json").read_text())
    print(f"features of generic: {sorted(meta['features'])}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "check"):
        sys.exit("usage: check_export.py write|check DIR")
    sys.path.insert(0, str(HERE))
    sys.exit(write(Path(sys.argv[2])) if sys.argv[1] == "write" else check(Path(sys.argv[2])))
