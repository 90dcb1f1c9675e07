"""MosaicML Streaming's side of ``bench_remote.py``, run in its own interpreter.

Run by ``bench_remote.py`` as ``python remote_mds.py write|read ...`` with
``PYTHONPATH`` = the directory MosaicML Streaming was installed into
(``pip install --no-deps --target bench_data/mds_site ...``, see
``bench_remote.py``): its full dependency set would replace this project's
torch, numpy and google-cloud-storage, so it never enters ``.venv``.

Two adjustments, both outside what is measured:

- ``streaming/__init__.py`` imports its vision and text datasets, which need a
  torchvision matching this torch (none exists for the CPU build here); the
  package is entered without that file, so ``streaming.base`` (``MDSWriter``,
  ``StreamingDataset``) loads as the library wrote it.
- Its GCS downloader builds its client from default credentials (or HMAC keys
  against storage.googleapis.com); here it gets google-cloud-storage's
  anonymous client, which honours ``STORAGE_EMULATOR_HOST``. The download
  itself is the library's own (``Blob.download_to_filename``).

``write`` prints nothing; ``read`` prints one JSON line: samples, seconds.
:func:`run_side` is the parent's call.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np


def run_side(site: Path, argv: list[str], timeout: float) -> dict:
    """Runs this file with ``argv`` in a fresh interpreter with ``site`` on ``PYTHONPATH``: its JSON line
    (``{}`` when it prints none), or ``{"error": ...}`` (its last stderr line, or the timeout)."""
    cmd = [sys.executable, __file__, *argv]
    env = dict(os.environ, PYTHONPATH=str(site))
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout:.0f} s"}
    if done.returncode:
        return {"error": (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]}
    lines = done.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


def write_shards(site: Path, games: list, frames_dir: Path, out: Path, compression: str,
                 size_limit: int) -> str | None:
    """MDS shards of the rows of ``games`` (``ale_frames.Frames``), written by the side interpreter at
    ``site``; an error line, or None."""
    import shutil

    if (out / "index.json").exists():
        return None
    if not (frames_dir / "done.npy").exists():
        frames_dir.mkdir(parents=True, exist_ok=True)
        for name in ("obs", "action", "reward"):
            np.save(frames_dir / f"{name}.npy", np.concatenate([getattr(f, name) for f in games]))
        done = np.zeros(sum(len(f.obs) for f in games), np.uint8)
        done[np.cumsum(np.concatenate([f.ep_len for f in games])) - 1] = 1
        np.save(frames_dir / "done.npy", done)
    error = run_side(site, ["write", "--frames", str(frames_dir), "--out", str(out), "--compression", compression,
                            "--size-limit", str(size_limit)], 900).get("error")
    if error:
        shutil.rmtree(out, ignore_errors=True)
    return error


def load_streaming():
    spec = importlib.util.find_spec("streaming")
    if spec is None:
        raise SystemExit("MosaicML Streaming is not on PYTHONPATH; see bench_remote.py for the install command")
    pkg = types.ModuleType("streaming")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["streaming"] = pkg
    from google.cloud.storage import Client
    from streaming import base
    from streaming.base.storage import download

    def anonymous(self) -> None:
        self._gcs_client = Client.create_anonymous_client()

    download.GCSDownloader._create_gcs_client = anonymous
    return base


def write(args: argparse.Namespace) -> None:
    base = load_streaming()
    src = Path(args.frames)
    obs = np.load(src / "obs.npy", mmap_mode="r")
    action = np.load(src / "action.npy")
    reward = np.load(src / "reward.npy")
    done = np.load(src / "done.npy")
    columns = {"observation": f"ndarray:uint8:{','.join(map(str, obs.shape[1:]))}", "action": "int64",
               "reward": "float32", "done": "uint8"}
    with base.MDSWriter(out=args.out, columns=columns, compression=args.compression or None,
                        size_limit=args.size_limit, progress_bar=False) as w:
        for i in range(obs.shape[0]):
            w.write({"observation": np.ascontiguousarray(obs[i]), "action": int(action[i]),
                     "reward": float(reward[i]), "done": int(done[i])})


def read(args: argparse.Namespace) -> None:
    base = load_streaming()
    import torch

    base.util.clean_stale_shared_memory()
    t0 = time.perf_counter()
    ds = base.StreamingDataset(remote=args.remote, local=args.local, shuffle=True, shuffle_seed=0,
                               shuffle_block_size=args.shuffle_block or None, num_canonical_nodes=1,
                               batch_size=args.batch, cache_limit=args.cache_limit or None)
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch, num_workers=0)
    n = 0
    for batch in loader:
        n += int(batch["action"].shape[0])
    seconds = time.perf_counter() - t0
    print(json.dumps({"samples": n, "seconds": seconds, "rows": len(ds)}))


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("--frames", required=True)
    w.add_argument("--out", required=True)
    w.add_argument("--compression", default="")
    w.add_argument("--size-limit", type=int, required=True)
    r = sub.add_parser("read")
    r.add_argument("--remote", required=True)
    r.add_argument("--local", required=True)
    r.add_argument("--batch", type=int, default=128)
    r.add_argument("--cache-limit", type=int, default=0)
    r.add_argument("--shuffle-block", type=int, default=0)
    args = p.parse_args()
    (write if args.cmd == "write" else read)(args)


if __name__ == "__main__":
    main()
