"""Minari datasets: TorchRL's ``MinariExperienceReplay`` and ours on the same local dataset.

Run: ``.venv/bin/python benchmarks/bench_minari.py [--frames 4000 --size 84 --repeats 5]``
Writes ``benchmarks/results/minari.md``.

Data: real ``ALE/Breakout-v5`` RGB frames (random policy, frame skip 4,
box-resized to ``size x size``; ``ale_frames.py``, cached under ``bench_data/minari/``), written by the real
``minari`` package (``create_dataset_from_buffers``, HDF5, ``jpeg_encoding=False``:
TorchRL's local reader takes the HDF5 arrays as they are) into a Minari datasets
directory that ``MINARI_DATASETS_PATH`` points at, so nothing is downloaded.

Peer: ``MinariExperienceReplay(dataset_id, load_from_local_minari=True)``
(TorchRL reads ``main_data.hdf5`` with ``PersistentTensorDict``, builds the
whole dataset in RAM, then a memmap TensorDict with ``observation`` and
``("next", "observation")`` stored separately). Ours: ``import_minari`` with
frames as zstd chunks (the default) and as raw memmaps, read through
``ShardedStorage`` in a ``TensorDictReplayBuffer``. Batches: 256 random rows
(``RandomSampler``) and 8 slices of 32 steps (``SliceSampler``), each with the
observation, next observation, action, reward and done flags; setup outside the
timing, median of ``repeats`` runs of ``iters`` batches.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent

from ale_frames import load_or_collect
from common import timeit, write_results

DATASET_ID = "bench/breakout-v0"
BATCH = 256


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def write_minari(frames, root: Path) -> None:
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    buffers = []
    for e, (obs, nxt, action, reward, terminated) in enumerate(frames.episodes()):
        t = len(action)
        buffers.append(EpisodeBuffer(seed=e, observations=np.concatenate([obs, nxt[-1:]]), actions=action,
                                     rewards=reward.astype(np.float64), terminations=[False] * (t - 1) + [terminated],
                                     truncations=[False] * (t - 1) + [not terminated]))
    space = gym.spaces.Box(0, 255, frames.obs.shape[1:], np.uint8)
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(DATASET_ID, buffers, observation_space=space,
                                           action_space=gym.spaces.Discrete(4), jpeg_encoding=False,
                                           algorithm_name="random", author="bench")


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=4000)
    ap.add_argument("--size", type=int, default=84)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--cache", default=str(HERE.resolve().parent / "bench_data" / "minari"))
    ap.add_argument("--out", default=str(HERE / "results" / "minari.md"))
    args = ap.parse_args()

    import torch
    from torchrl.data import TensorDictReplayBuffer
    from torchrl.data.datasets import MinariExperienceReplay
    from torchrl.data.replay_buffers import RandomSampler, SliceSampler

    from torchrl_ext.interop.minari import import_minari

    torch.manual_seed(0)
    frames = load_or_collect(args.cache, "Breakout", args.frames, rgb=True, size=args.size)
    work = Path(tempfile.mkdtemp(prefix="bench_minari_"))
    try:
        minari_root = work / "minari"
        _, t_make = timed(lambda: write_minari(frames, minari_root))
        source_bytes = dir_bytes(minari_root / DATASET_ID)
        theirs, t_theirs = timed(lambda: MinariExperienceReplay(
            DATASET_ID, batch_size=BATCH, root=work / "torchrl", load_from_local_minari=True))
        theirs_bytes = dir_bytes(work / "torchrl" / DATASET_ID)
        ours, t_ours = timed(lambda: import_minari(DATASET_ID, work / "ours", progress=False))
        raw, t_raw = timed(lambda: import_minari(DATASET_ID, work / "ours_raw", encodings={}, progress=False))
        rows = len(ours)
        ours_b, raw_b = dir_bytes(work / "ours"), dir_bytes(work / "ours_raw")

        # ours against the frames written; TorchRL's against ours
        td_ours = ours[np.arange(rows)]
        finals = np.cumsum(frames.ep_len) - 1
        ours_equal = bool(np.array_equal(td_ours["observation"].numpy(), frames.obs)
                          and np.array_equal(td_ours["next", "observation"].numpy()[finals], frames.final)
                          and np.array_equal(td_ours["action"].numpy(), frames.action)
                          and np.array_equal(td_ours["next", "reward"].numpy()[:, 0], frames.reward))
        td_theirs = theirs[:]
        theirs_equal = {k: bool(torch.equal(td_theirs[k], td_ours[k].to(td_theirs[k].dtype).reshape(
            td_theirs[k].shape))) for k in ("observation", ("next", "observation"), "action", ("next", "reward"))}
        theirs_zero = all(not td_theirs[k].any() for k in ("observation", "action"))

        def rb(storage, sampler):
            return TensorDictReplayBuffer(storage=storage, sampler=sampler, batch_size=BATCH)

        eps = ours.episodes
        theirs_slice = TensorDictReplayBuffer(  # TorchRL's own storage with a slice sampler
            storage=theirs._storage, batch_size=BATCH, sampler=SliceSampler(slice_len=32, traj_key="episode"))
        cases = {
            "random": {"torchrl": theirs, "ours (zstd)": rb(ours, RandomSampler()), "ours (raw)": rb(raw, RandomSampler())},
            "slice": {"torchrl": theirs_slice,
                      "ours (zstd)": rb(ours, SliceSampler(slice_len=32, trajectories=eps, cache_values=True)),
                      "ours (raw)": rb(raw, SliceSampler(slice_len=32, trajectories=eps, cache_values=True))},
        }
        speed = {(case, name): BATCH / timeit(buf.sample, args.iters, args.repeats)
                 for case, bufs in cases.items() for name, buf in bufs.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    mib = 1 << 20
    load = os.getloadavg()[0]
    lines = [
        "## Minari datasets (`torchrl_ext.interop.minari`) vs TorchRL's `MinariExperienceReplay`",
        "",
        (f"Command: `.venv/bin/python benchmarks/bench_minari.py --frames {args.frames} --size {args.size} "
        f"--repeats {args.repeats} --iters {args.iters}`"),
        (f"{platform.machine()}, {os.cpu_count()} cores (1-minute load average {load:.1f}), python "
        f"{platform.python_version()}. {len(frames.ep_len)} episodes, {rows} steps of real Breakout RGB frames "
        f"{args.size}x{args.size}x3 in a Minari HDF5 dataset ({source_bytes / mib:.1f} MiB; written by minari in "
        f"{t_make:.1f} s, not timed). Batches of {BATCH} rows: median of {args.repeats} runs of {args.iters}."),
        "",
        "| operation | torchrl | ours (zstd frames) | ours (raw) | ours (zstd) vs torchrl |",
        "|---|---|---|---|---|",
        (f"| conversion from the local Minari dataset | {t_theirs:.2f} s | {t_ours:.2f} s | {t_raw:.2f} s | "
         f"{t_theirs / t_ours:.2f}x faster |"),
        (f"| bytes on disk | {theirs_bytes / mib:.1f} MiB | {ours_b / mib:.1f} MiB | {raw_b / mib:.1f} MiB | "
         f"{theirs_bytes / ours_b:.1f}x smaller |"),
    ]
    for case, label in (("random", "random batch (RandomSampler)"), ("slice", "8 slices of 32 (SliceSampler)")):
        t, z, r = (speed[(case, n)] for n in ("torchrl", "ours (zstd)", "ours (raw)"))
        lines.append(f"| {label}, samples/s | {t:,.0f} | {z:,.0f} | {r:,.0f} | {z / t:.2f}x |")
    lines += [
        "",
        "Notes:",
        (f"- Ours equals the frames, actions and rewards written to Minari, final frames included: {ours_equal}. "
         f"TorchRL's rows equal ours: {theirs_equal}; TorchRL's observations and actions are all zeros: "
         f"{theirs_zero} (`_download_and_preproc` fills an in-RAM TensorDict, then returns `memmap_like` of it, "
         "which has its shapes but not its values), so its conversion time does not include copying the values "
         "to disk."),
        ("- Layout: TorchRL keeps the whole dataset in RAM while converting and stores `observation` and "
         "`(\"next\", \"observation\")` as two raw memmaps; ours streams one episode at a time and stores each "
         "frame once (the next observation is the following row, plus the final frame), by default as zstd chunks "
         "of 16 frames that a batch decodes (one chunk per random row). Breakout frames are mostly black: zstd "
         "shrinks them far more than typical frames."),
        "- Samples/s count rows with their next observation; a ratio above 1 means ours is faster.",
    ]
    write_results(args.out, lines)


if __name__ == "__main__":
    main()
