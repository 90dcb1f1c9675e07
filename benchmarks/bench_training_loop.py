"""Training loop: sampling time as a share of a DQN step, raw vs zstd vs TorchRL's Atari class.

Data: real ALE frames (``ale_frames.py``: 84x84 grayscale, frame skip 4, random
policy, whole episodes) of ``--games`` (``--frames`` steps each), cached under
``bench_data/training_loop/``, written three ways once and reused:

* ``raw`` and ``zstd``: ``ShardWriter`` datasets (observation as memory-mapped
  rows, or per-frame zstd), read through ``FrameStackStorage(stack=4)``;
* TorchRL: the on-disk layout ``AtariDQNExperienceReplay._preproc_run`` writes
  (``data/observation.memmap`` of C + 1 frames, ``action``, ``next/reward``,
  ``next/terminated``, ``add_count``, ``invalid_range``), one checkpoint
  directory per game, sampled by TorchRL's own class (its ``_AtariStorage``).
  It cannot stack frames: its single frame is repeated 4 times (a view) so the
  network and the update are the same for every source.

Each step: ``rb.sample()`` (timed as "sample"), then float conversion (frames /
255, action to int64, reward and flags to ``[B, 1]``), ``DQNLoss`` (Nature CNN:
3 conv + 2 fc in a ``QValueActor``, ``delay_value=True``, TD(0), gamma 0.99),
backward, Adam step and a soft target update (timed together as "update").
Sources are interleaved round by round so load drift hits all of them alike.

Then (unless ``--no-page-cache``) the hot/cold comparison of one random-128 batch (with next
observation, single frames) for ``raw`` and TorchRL's class: hot after the frame
files were read once, cold after dropping the files' pages from the page cache
(``posix_fadvise(DONTNEED)``, in a fresh process before its first read), with 1 and
2 torch threads, plus a ``cProfile`` of TorchRL's hot ``rb.sample()``.

Run: ``.venv/bin/python benchmarks/bench_training_loop.py`` (writes
``benchmarks/results/training_loop.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import ale_frames
from common import write_results

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "training_loop.md"
STACK = 4
SOURCES = ("raw", "zstd", "torchrl")


def build_datasets(cache: Path, games: list[str], frames: int) -> tuple[dict[str, Path], int, int]:
    """The three datasets of ``games`` under ``cache`` (built when missing); rows and episodes."""
    data = [ale_frames.load_or_collect(cache, g, frames) for g in games]
    tag = f"{'-'.join(games)}-{frames}"
    paths = {"raw": cache / f"raw-{tag}", "zstd": cache / f"zstd-{tag}", "torchrl": cache / f"torchrl-{tag}"}
    for enc in ("raw", "zstd"):
        if not (paths[enc] / "dataset.json").exists():
            tmp = paths[enc].with_name(paths[enc].name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            ale_frames.write_dataset(tmp, data, shard_rows=50_000,
                                     encodings=None if enc == "raw" else {"observation": "zstd"})
            tmp.rename(paths[enc])
    if not (paths["torchrl"] / "Pong" / "1").exists():
        tmp = paths["torchrl"].with_name(paths["torchrl"].name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        for split, f in enumerate(data):
            torchrl_checkpoint(tmp / "Pong" / "1" / str(split), f)
        tmp.rename(paths["torchrl"])
    return paths, sum(len(f.obs) for f in data), sum(len(f.ep_len) for f in data)


def torchrl_checkpoint(dest: Path, f: ale_frames.Frames) -> None:
    """One checkpoint directory as ``_preproc_run`` writes it: Dopamine's rows (frame t, next frame t + 1,
    zeroed by TorchRL at a terminal row), observation padded with one empty frame."""
    import torch
    from tensordict import MemoryMappedTensor, TensorDict

    n = len(f.obs)
    td = TensorDict()
    (dest / "data" / "next").mkdir(parents=True, exist_ok=True)
    obs = MemoryMappedTensor.empty((n + 1, 84, 84), dtype=torch.uint8, filename=dest / "data" / "observation.memmap")
    obs.numpy()[:n] = f.obs
    td["data", "observation"] = obs
    terminal = np.zeros(n, np.uint8)
    terminal[np.cumsum(f.ep_len) - 1] = 1
    cols = {("data", "action"): f.action.astype(np.int32), ("data", "next", "reward"): f.reward,
            ("data", "next", "terminated"): terminal, ("add_count",): np.array(n, np.int64),
            ("invalid_range",): (np.arange(n - 1, n + STACK) % n).astype(np.int64)}
    for key, arr in cols.items():
        filename = dest.joinpath(*key[:-1], key[-1] + ".memmap")
        td[key] = MemoryMappedTensor.from_tensor(torch.as_tensor(arr), filename=filename)
    td.set_non_tensor("dataset_id", "Pong/1")
    td.memmap_(dest, copy_existing=False)


def make_buffer(source: str, path: Path, batch: int, stack: int = STACK):
    """A replay buffer sampling ``batch`` random rows of ``source``."""
    import warnings

    from torchrl.data import (
        ImmutableDatasetWriter,
        RandomSampler,
        TensorDictReplayBuffer,
    )

    if source == "torchrl":
        from torchrl.data.datasets.atari_dqn import AtariDQNExperienceReplay

        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return AtariDQNExperienceReplay("Pong/1", batch, root=path, download=False)
    from torchrl_ext.datasets import FrameStackStorage

    return TensorDictReplayBuffer(storage=FrameStackStorage(path, stack=stack), sampler=RandomSampler(),
                                  writer=ImmutableDatasetWriter(), batch_size=batch)


def to_train(td):
    """The sample as the loss takes it: float frames ``[B, 4, 84, 84]``, int64 actions, ``[B, 1]`` reward and flags."""
    import torch
    from tensordict import TensorDict

    def frames(x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:  # TorchRL's class: single frames, repeated as a view
            x = x.unsqueeze(1).expand(-1, STACK, -1, -1)
        return x.float().div_(255)

    b = td.batch_size[0]
    done = td["next", "terminated"].reshape(b, 1).bool()
    return TensorDict({
        "observation": frames(td["observation"]), "action": td["action"].reshape(b).long(),
        "next": {"observation": frames(td["next", "observation"]), "reward": td["next", "reward"].reshape(b, 1).float(),
                 "done": done, "terminated": done},
    }, [b])


def make_learner(n_actions: int, seed: int):
    """Nature CNN in a ``QValueActor``, ``DQNLoss(delay_value=True)``, Adam and a soft target update."""
    import torch
    from torch import nn
    from torchrl.data import Categorical
    from torchrl.modules import QValueActor
    from torchrl.objectives import DQNLoss, SoftUpdate

    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(STACK, 32, 8, 4), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(),
                        nn.Conv2d(64, 64, 3, 1), nn.ReLU(), nn.Flatten(), nn.Linear(3136, 512), nn.ReLU(),
                        nn.Linear(512, n_actions))
    actor = QValueActor(net, in_keys=["observation"], spec=Categorical(n_actions))
    loss = DQNLoss(actor, delay_value=True, action_space="categorical")
    loss.make_value_estimator(gamma=0.99)
    return loss, torch.optim.Adam(loss.parameters(), lr=1e-4), SoftUpdate(loss, eps=0.995)


def train_steps(rb, learner, steps: int, times: list[tuple[float, float]]) -> float:
    """Runs ``steps`` steps, appending (sample s, update s) to ``times``; returns the last loss."""
    loss, opt, target = learner
    value = 0.0
    for _ in range(steps):
        t0 = time.perf_counter()
        td = rb.sample()
        t1 = time.perf_counter()
        out = loss(to_train(td))
        out["loss"].backward()
        opt.step()
        opt.zero_grad()
        target.step()
        value = float(out["loss"].detach())
        times.append((t1 - t0, time.perf_counter() - t1))
    return value


def training(paths: dict[str, Path], batches: list[int], rounds: int, steps: int, warmup: int) -> dict:
    """Per batch size and source: median sample / update ms over ``rounds`` x ``steps`` interleaved steps."""
    n_actions = 18  # ALE has at most 18 actions: covers every game's action indices
    res = {}
    for batch in batches:
        rbs = {s: make_buffer(s, paths[s], batch) for s in SOURCES}
        learners = {s: make_learner(n_actions, seed=0) for s in SOURCES}
        times: dict[str, list] = {s: [] for s in SOURCES}
        for s in SOURCES:
            train_steps(rbs[s], learners[s], warmup, [])
        losses = {}
        for _ in range(rounds):
            for s in SOURCES:
                losses[s] = train_steps(rbs[s], learners[s], steps, times[s])
        for s in SOURCES:
            sample = [a * 1e3 for a, _ in times[s]]
            update = [b * 1e3 for _, b in times[s]]
            res[(batch, s)] = {"sample": statistics.median(sample), "update": statistics.median(update),
                               "share": sum(sample) / (sum(sample) + sum(update)), "loss": losses[s],
                               "n": len(sample)}
    return res


_CHILD = r"""
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(int(sys.argv[5]))
from bench_training_loop import make_buffer
source, path, state = sys.argv[2], Path(sys.argv[3]), sys.argv[4]
rb = make_buffer(source, path, 128, stack=1)
files = [p for p in path.rglob("*") if p.is_file() and p.stat().st_size > (1 << 20)]
def drop():
    for p in files:
        fd = os.open(p, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
if state == "hot":
    for p in files:
        with open(p, "rb") as f:
            while f.read(64 << 20):
                pass
    for _ in range(3):
        rb.sample()
else:
    drop()
torch.manual_seed(1)
out = []
for _ in range(20):
    t0 = time.perf_counter()
    rb.sample()
    out.append((time.perf_counter() - t0) * 1e3)
first = out[0]
out.sort()
print(json.dumps({"median": out[len(out) // 2], "min": out[0], "max": out[-1], "first": first}))
"""


def page_cache(paths: dict[str, Path]) -> dict:
    """ms per random-128 batch (single frames, with next) hot and cold, 1 and 2 torch threads, each in a
    fresh process."""
    res = {}
    for threads in (1, 2):
        for state in ("hot", "cold"):
            for s in ("raw", "torchrl"):
                out = subprocess.run([sys.executable, "-c", _CHILD, str(HERE), s, str(paths[s]), state, str(threads)],
                                     check=True, capture_output=True, text=True)
                res[(s, state, threads)] = json.loads(out.stdout.strip().splitlines()[-1])
    return res


def read_ahead_kb() -> str:
    """The read-ahead of the disk holding ``/work`` (what one fault on a cold memory map reads)."""
    dev = Path(f"/sys/dev/block/{os.major(os.stat(HERE).st_dev)}:{os.minor(os.stat(HERE).st_dev)}")
    for q in (dev / "queue" / "read_ahead_kb", dev.parent / "queue" / "read_ahead_kb",
              dev.resolve().parent / "queue" / "read_ahead_kb"):
        if q.exists():
            return f"{q.read_text().strip()} KB"
    return "unknown"


def profile_torchrl(path: Path) -> list[str]:
    """The top entries of a cProfile of 50 hot ``rb.sample()`` of TorchRL's class, by cumulative time."""
    import cProfile
    import io
    import pstats

    rb = make_buffer("torchrl", path, 128)
    for _ in range(5):
        rb.sample()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(50):
        rb.sample()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(8)
    return [ln for ln in buf.getvalue().splitlines() if ln.strip()][-9:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--games", nargs="+", default=["Pong", "Breakout"])
    ap.add_argument("--frames", type=int, default=100_000, help="steps of each game")
    ap.add_argument("--batches", nargs="+", type=int, default=[32, 128])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=6, help="steps per source and round")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-page-cache", dest="page_cache", action="store_false",
                    help="skip the hot/cold sampling rows and TorchRL's profile")
    ap.add_argument("--cache", default=str(HERE.parent / "bench_data" / "training_loop"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    paths, rows, episodes = build_datasets(Path(args.cache), args.games, args.frames)
    res = training(paths, args.batches, args.rounds, args.steps, args.warmup)
    cache = page_cache(paths) if args.page_cache else {}
    prof = profile_torchrl(paths["torchrl"]) if args.page_cache else []
    load_after = os.getloadavg()
    size = {s: sum(p.stat().st_size for p in paths[s].rglob("*") if p.is_file()) for s in SOURCES}
    cmd = (f"`.venv/bin/python benchmarks/bench_training_loop.py --games {' '.join(args.games)} --frames {args.frames} "
           f"--batches {' '.join(map(str, args.batches))} --rounds {args.rounds} --steps {args.steps}"
           f"{'' if args.page_cache else ' --no-page-cache'}`")
    lines = [
        "## Training loop: sampling as a share of a DQN step",
        "",
        f"Command: {cmd}",
        "",
        f"Data: {rows:,} rows ({episodes:,} whole episodes) of real ALE frames of {', '.join(args.games)} "
        f"(84x84 grayscale, random policy), {rows * 84 * 84 / 1e9:.2f} GB of frames; on disk: "
        + ", ".join(f"{s} {size[s] / 1e9:.2f} GB" for s in SOURCES)
        + f". CPU only, `torch.set_num_threads({args.threads})`, 2 cores shared with other jobs: 1-minute load "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after. Medians over {args.rounds} x {args.steps} steps "
        f"per cell after {args.warmup} warm-up steps, sources interleaved round by round; share = total sample "
        "time / total step time.",
        "",
        "| batch | source | sample ms | update ms | sample share of step | sample vs raw |",
        "|---|---|---|---|---|---|",
    ]
    names = {"raw": "torchrl_ext `raw`, stack 4", "zstd": "torchrl_ext `zstd`, stack 4",
             "torchrl": "TorchRL `AtariDQNExperienceReplay` (single frames, repeated to 4)"}
    for batch in args.batches:
        for s in SOURCES:
            r = res[(batch, s)]
            ratio = r["sample"] / res[(batch, "raw")]["sample"]
            lines.append(f"| {batch} | {names[s]} | {r['sample']:.2f} | {r['update']:.1f} | "
                         f"{100 * r['share']:.1f}% | {ratio:.2f}x |")
    if cache:
        lines += ["", ("Page cache and torch threads: random 128 with next observation, single frames (`raw` through "
                  "`FrameStackStorage(stack=1)`), ms per batch median (min-max) over 20 batches, each cell in a fresh "
                  "process; hot: frame files read once and 3 batches first; cold: the files' pages dropped "
                  "(`posix_fadvise(DONTNEED)`) before the first batch. This disk's `read_ahead_kb` is "
                  f"{read_ahead_kb()}: a page fault on a cold memory map reads that much around it."), "",
                  "| source | torch threads | hot | cold | cold / hot | cold, first batch ms |",
                  "|---|---|---|---|---|---|"]
        for s in ("raw", "torchrl"):
            for threads in (1, 2):
                h, c = cache[(s, "hot", threads)], cache[(s, "cold", threads)]
                lines.append(f"| {names[s].split(' (')[0].replace(', stack 4', '')} | {threads} | "
                             f"{h['median']:.2f} ({h['min']:.2f}-{h['max']:.2f}) | "
                             f"{c['median']:.2f} ({c['min']:.2f}-{c['max']:.2f}) | {c['median'] / h['median']:.1f}x | {c['first']:.0f} |")
        lines += ["", "TorchRL `rb.sample()` (batch 128, hot), cProfile of 50 calls, by own time:", "", "```",
                  *prof, "```"]
    write_results(OUT, lines + [""])


if __name__ == "__main__":
    main()
