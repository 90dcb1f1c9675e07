"""``torchrl_ext.preprocess()`` against TorchRL's ``BaseDatasetExperienceReplay.preprocess``.

Run: ``.venv/bin/python benchmarks/bench_preprocess.py [--rows 10000 40000 --workers 2]``
Writes ``benchmarks/results/preprocess.md``.

Both sides map the same function over the same 84x84 uint8 Atari-like frames
with 2 worker processes (fork): resize ``observation`` and
``("next", "observation")`` to 64x64 (bilinear) and normalise every frame by
its own mean and standard deviation (float32).

- ours: ``preprocess(dataset_dir, fn, dest, num_workers=2)`` over a sharded
  dataset written by ``write_synthetic``.
- peer: TorchRL's code path for TensorStorage-backed datasets
  (``BaseDatasetExperienceReplay.preprocess``, called on a
  ``TensorDictReplayBuffer`` over a ``TensorStorage`` of a memory-mapped
  TensorDict holding the same rows, next observations included, as TorchRL's
  dataset classes store them).

Each run happens in a fresh subprocess of a small parent (setup, also in a
subprocess, is outside the timing, which covers the preprocess call alone). Peak RSS: the largest single process
(``getrusage`` of the run and of its reaped workers) and the sum over the
process tree sampled from ``/proc`` every 20 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "preprocess.md"
SHARD_ROWS = 2500
OBS = (84, 84)


def resize_normalise(td):
    """84x84 uint8 -> 64x64 float32, each frame normalised by its own mean and std."""
    for key in ("observation", ("next", "observation")):
        x = td.get(key)
        lead = x.shape[:-2]
        y = torch.nn.functional.interpolate(x.reshape(-1, 1, *x.shape[-2:]).float(), size=(64, 64),
                                            mode="bilinear", align_corners=False)
        std, mean = torch.std_mean(y, dim=(-1, -2), keepdim=True)
        y = (y - mean) / (std + 1e-6)
        td.set(key, y.reshape(*lead, 64, 64))
    return td


# ---------------------------------------------------------------- setup (not timed)
def make_sources(base: Path, rows: int) -> tuple[Path, Path]:
    from torchrl_ext import ShardedStorage
    from torchrl_ext.synthetic import write_synthetic

    ours = base / f"ours-{rows}"
    episodes = rows // 500
    write_synthetic(ours, episodes=episodes, length=500, obs_shape=OBS, shard_rows=SHARD_ROWS)
    storage = ShardedStorage(ours, cache_bytes=0)
    peer = base / f"peer-{rows}"
    example = storage[0]
    mm = example.expand(len(storage)).memmap_like(peer)
    for a in range(0, len(storage), SHARD_ROWS):
        mm[a:a + SHARD_ROWS] = storage[a:a + SHARD_ROWS]
    return ours, peer


# ---------------------------------------------------------------- one measured run (subprocess)
def run_one(kind: str, src: str, dest: str, workers: int) -> None:
    if kind == "ours":
        from torchrl_ext import preprocess

        t0 = time.perf_counter()
        out = preprocess(src, resize_normalise, dest, num_workers=workers, pbar=False)
        seconds = time.perf_counter() - t0
        rows = len(out)
    else:
        from tensordict import TensorDict
        from torchrl.data import TensorDictReplayBuffer
        from torchrl.data.datasets.common import BaseDatasetExperienceReplay
        from torchrl.data.replay_buffers import TensorStorage

        rb = TensorDictReplayBuffer(storage=TensorStorage(TensorDict.load_memmap(src)))
        t0 = time.perf_counter()
        out = BaseDatasetExperienceReplay.preprocess(rb, resize_normalise, num_workers=workers,
                                                     mp_start_method="fork", dest=dest)
        seconds = time.perf_counter() - t0
        rows = len(out)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"seconds": seconds, "rows": rows, "max_proc_kb": max(own, kids),
                      "main_kb": own, "workers_kb": kids}))


def _tree_rss_kb(pid: int) -> int:
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def measure(kind: str, src: Path, dest: Path, workers: int) -> dict:
    shutil.rmtree(dest, ignore_errors=True)
    proc = subprocess.Popen(
        [sys.executable, __file__, "--one", kind, str(src), str(dest), str(workers)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss_kb(proc.pid))
        time.sleep(0.02)
    out = proc.stdout.read()
    if proc.returncode:
        raise RuntimeError(f"{kind} run failed with exit code {proc.returncode}")
    res = json.loads(out.strip().splitlines()[-1])
    res["tree_peak_kb"] = peak
    shutil.rmtree(dest, ignore_errors=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[10000, 40000])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--one", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--make", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.make:
        make_sources(Path(args.make[0]), int(args.make[1]))
        return
    if args.one:
        kind, src, dest, workers = args.one
        run_one(kind, src, dest, int(workers))
        return
    base = Path(tempfile.mkdtemp(prefix="bench-preprocess-"))
    args.load_before = os.getloadavg()[0]
    results = []
    try:
        for rows in args.rows:
            # In a subprocess: Linux keeps ru_maxrss across exec, so this process must stay small.
            subprocess.run([sys.executable, __file__, "--make", str(base), str(rows)], check=True, cwd=ROOT)
            ours_src, peer_src = base / f"ours-{rows}", base / f"peer-{rows}"
            for kind, src in (("ours", ours_src), ("peer", peer_src)):
                runs = [measure(kind, src, base / "dest", args.workers) for _ in range(args.repeats)]
                best = min(runs, key=lambda r: r["seconds"])
                best["tree_peak_kb"] = max(r["tree_peak_kb"] for r in runs)
                best["max_proc_kb"] = max(r["max_proc_kb"] for r in runs)
                results.append((rows, kind, best))
                print(rows, kind, best, flush=True)
            shutil.rmtree(ours_src)
            shutil.rmtree(peer_src)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    args.load_after = os.getloadavg()[0]
    write_table(results, args)


def write_table(results, args) -> None:
    by = {(r, k): v for r, k, v in results}
    cmd = (".venv/bin/python benchmarks/bench_preprocess.py --rows "
           + " ".join(map(str, args.rows)) + f" --workers {args.workers} --repeats {args.repeats}")
    lines = [
        "## Preprocess: resize to 64x64 + per-frame normalisation",
        "",
        f"Command: `{cmd}`",
        f"Data: synthetic 84x84 uint8 frames, episodes of 500 steps, {SHARD_ROWS} rows per shard; "
        f"{args.workers} worker processes (fork) on both sides; {platform.machine()}, "
        f"{os.cpu_count()} cores (1-minute load average "
        f"{args.load_before:.1f} before, {args.load_after:.1f} after), torch {torch.__version__}, "
        f"python {platform.python_version()}. Time: best of {args.repeats} runs, preprocess call only. "
        "RSS: worst of the runs.",
        "",
        "| rows | implementation | seconds | rows/s | speed-up | peak RSS, largest process (MiB) | peak RSS, process tree (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for rows in args.rows:
        o, p = by[(rows, "ours")], by[(rows, "peer")]
        for name, r in (("torchrl_ext `preprocess`", o), ("TorchRL `BaseDatasetExperienceReplay.preprocess`", p)):
            speed = f"{p['seconds'] / o['seconds']:.2f}x" if r is o else "1.00x"
            lines.append(
                f"| {rows} | {name} | {r['seconds']:.2f} | {rows / r['seconds']:.0f} | {speed} | "
                f"{r['max_proc_kb'] / 1024:.0f} | {r['tree_peak_kb'] / 1024:.0f} |"
            )
    small, large = args.rows[0], args.rows[-1]
    ratios = [by[(r, "peer")]["seconds"] / by[(r, "ours")]["seconds"] for r in args.rows]
    growth_ours = by[(large, "ours")]["tree_peak_kb"] / by[(small, "ours")]["tree_peak_kb"]
    growth_peer = by[(large, "peer")]["tree_peak_kb"] / by[(small, "peer")]["tree_peak_kb"]
    lines += [
        "",
        f"- Speed: {min(ratios):.2f}x to {max(ratios):.2f}x faster than TorchRL (target >= 2x): "
        f"**{'met' if min(ratios) >= 2 else 'missed'}**.",
        f"- Memory: process-tree peak RSS grows {growth_ours:.2f}x from {small} to {large} rows for ours "
        f"({growth_peer:.2f}x for TorchRL) (target: independent of dataset size): "
        f"**{'met' if growth_ours < 1.2 else 'missed'}**.",
        "- RSS counts file pages mapped into a process. Ours reads source rows through "
        "`ShardedStorage.get` (memory-mapped) with a fresh storage per shard, so a worker holds at most "
        "one source shard's pages plus one batch; output is written with plain file writes. TorchRL maps "
        "the whole source and the whole output into every process, so touched pages accumulate.",
        "- Ours stores the next observation once (it equals the next row's observation after this fn), "
        "TorchRL writes it as a second column: half the output bytes. Both sides call the same fn on the "
        "same rows (next observations included), and fn dominates: in one process ours spends ~70% of "
        "its time inside fn and ~10% writing (cProfile), so on 2 busy cores the ratio is bounded by how TorchRL's "
        "memory-mapped output behaves as it grows, not by our overhead.",
        "- The process-tree figure sums RSS over processes, so pages that forked workers share with their "
        "parent count more than once on both sides.",
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
