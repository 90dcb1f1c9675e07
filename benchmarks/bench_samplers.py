"""Sampling indices at 50 million rows: TorchRL's ``SliceSampler``, ``EventSliceSampler``, ``RandomSampler``.

Run: ``.venv/bin/python benchmarks/bench_samplers.py [--rows 50000000 --rounds 200]``
Writes ``benchmarks/results/samplers.md``.

The dataset (built once, cached under ``bench_data/samplers/``) holds scalar
columns only (``observation`` float32, ``action`` int64, ``("next", "reward")``,
``("next", "done")``), in episodes of 100-3,000 steps, a few tens of shards,
one event every ~500 steps. Measured per batch of 128 (min / median of
``--rounds`` interleaved rounds, one warm-up call each):

(a) ``sampler.sample(storage, 128)`` alone (the indices), for TorchRL's
    ``SliceSampler(slice_len=32, trajectories=storage.episodes, cache_values=True)``,
    the same through ``NarrowSliceSampler`` (what ``episode_sampler`` and
    ``ShardedExperienceReplay`` build: the flags alone read from the storage),
    ``EventSliceSampler`` (an event regex, windows of 32) and TorchRL's
    ``RandomSampler``; the storage ``get`` of those indices, separately;
    ``TensorDictReplayBuffer.sample()`` end to end. Ceiling: 1 ms for the indices.
(b) ``storage.episodes`` first-call time and the bytes it holds.
(c) At 100k rows: ``SliceSampler(traj_key="episode")`` (no ``trajectories=``)
    against ``SliceSampler(trajectories=storage.episodes)``, as a ratio.

Profile before (cProfile, 500 calls of TorchRL's ``SliceSampler.sample`` at
50M rows): about a third in TorchRL's index arithmetic (``_get_index``,
``_tensor_slices_from_startend``), two thirds in the ``storage[index]`` TorchRL
makes inside ``_finalize_index`` for done/terminated/is_init: every column of
the 128 rows (``ShardReader.gather`` routing per shard and column, then the
TensorDict). ``NarrowSliceSampler`` hands it ``storage.narrow(keys)``, which
gathers only those flags (``--profile`` prints the split after).
``EventSliceSampler`` and ``RandomSampler`` never read the storage in ``sample``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torchrl.data import TensorDictReplayBuffer
from torchrl.data.replay_buffers import RandomSampler, SliceSampler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_results

from torchrl_ext import EventIndex, EventSliceSampler, ShardedStorage, ShardWriter
from torchrl_ext.compat.torchrl_samplers import slice_sampler_keys
from torchrl_ext.datasets import NarrowSliceSampler
from torchrl_ext.events import WindowQuery

DATA = Path(__file__).resolve().parent.parent / "bench_data" / "samplers"
BATCH, SLICE = 128, 32
EVENT_EVERY = 500


def episode_lengths(rows: int, seed: int = 0) -> np.ndarray:
    """Episode lengths in [100, 3000] summing to exactly ``rows``."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(100, 3001, size=rows // 100 + 1)
    cut = int(np.searchsorted(np.cumsum(lengths), rows))
    lengths = lengths[:cut + 1].copy()
    lengths[-1] -= int(lengths.sum()) - rows
    if lengths[-1] < 100:  # fold a short tail into the previous episode
        lengths[-2] += lengths[-1]
        lengths = lengths[:-1]
    return lengths


def build(root: Path, rows: int, shard_rows: int) -> Path:
    """Writes the dataset once (reused while its manifest and event index exist)."""
    if (root / "dataset.json").exists() and (root / "events" / "index").exists():
        return root
    lengths = episode_lengths(rows)
    rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    with ShardWriter.create(root, shard_rows=shard_rows, overwrite=True,
                            source={"kind": "bench_samplers", "rows": rows}) as writer:
        for e, n in enumerate(lengths.tolist()):
            steps = np.arange(n)
            done = np.zeros((n, 1), bool)
            done[-1] = True
            td = {
                "observation": torch.from_numpy((e + steps / 1e4).astype(np.float32)),
                "action": torch.from_numpy((e + steps) % 6),
                "next": {"reward": torch.from_numpy(rng.random(n, dtype=np.float32)[:, None]),
                         "done": torch.from_numpy(done), "terminated": torch.from_numpy(done)},
            }
            at = np.arange(int(rng.integers(0, EVENT_EVERY)), n, EVENT_EVERY)
            events = [(int(t), f"goal:{int(t) % 3}", 1.0) for t in at]
            writer.add_episode(td, metadata={"score": float(e % 7)}, events=events)
            if e % 2000 == 0:
                print(f"  episode {e}/{len(lengths)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    EventIndex.build(root)
    print(f"built {rows} rows in {time.perf_counter() - t0:.0f} s", flush=True)
    return root


def interleaved(fns: dict[str, object], rounds: int) -> dict[str, tuple[float, float]]:
    """``{name: (min, median)}`` seconds per call, the calls of each round interleaved (one warm-up each)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: (min(t), statistics.median(t)) for name, t in times.items()}


def samplers(storage: ShardedStorage) -> dict[str, object]:
    """The samplers under test, built over ``storage`` (TorchRL's ``SliceSampler`` first, ours second)."""
    return {
        f"SliceSampler(slice_len={SLICE}, trajectories=storage.episodes, cache_values=True)":
            SliceSampler(slice_len=SLICE, trajectories=storage.episodes, cache_values=True),
        "NarrowSliceSampler (same arguments; episode_sampler's)":
            NarrowSliceSampler(slice_len=SLICE, trajectories=storage.episodes, cache_values=True),
        f"EventSliceSampler(event_regex='goal:[01]', win_len={SLICE})":
            EventSliceSampler(storage, WindowQuery(event_regex="goal:[01]", win_len=SLICE, bias=SLICE // 2), seed=0),
        "RandomSampler()": RandomSampler(),
    }


def measure_large(root: Path, rounds: int) -> list[str]:
    storage = ShardedStorage(root)
    t0 = time.perf_counter()
    episodes = storage.episodes
    first_call = time.perf_counter() - t0
    lines = [(f"Dataset: {len(storage):,} rows, {storage.num_episodes:,} episodes, {storage.num_shards} shards; "
             f"batch {BATCH}; {rounds} interleaved rounds."), "",
             (f"`storage.episodes` first call: {first_call * 1e3:.0f} ms, {episodes.numel() * 8 / 2**20:.0f} MiB "
             f"(int64 per row; later calls return the cached tensor)."), ""]
    built = {}
    t0 = time.perf_counter()
    made = samplers(storage)
    lines.append(f"Samplers built (incl. SliceSampler's start/stop cache, EventSliceSampler's windows): "
                 f"{time.perf_counter() - t0:.2f} s.")
    lines += ["", ("| sampler | sample(storage, 128) min / median | storage.get(idx) min / median "
              "| rb.sample() min / median |"), "|---|---|---|---|"]
    for name, sampler in made.items():
        idx = sampler.sample(storage, BATCH)[0]
        rb = TensorDictReplayBuffer(storage=storage, sampler=sampler, batch_size=BATCH)
        built[name] = {"sample": lambda s=sampler: s.sample(storage, BATCH),
                       "get": lambda i=idx: storage.get(i), "rb": rb.sample}
    slice_name, narrow_name = list(built)[:2]
    slice_idx = made[slice_name].sample(storage, BATCH)[0]
    built[slice_name]["inner"] = lambda: storage[slice_idx]  # the read SliceSampler makes inside sample()
    flags = storage.narrow(slice_sampler_keys(made[narrow_name]))
    built[narrow_name]["inner"] = lambda: flags[slice_idx]  # the read NarrowSliceSampler makes instead
    flat = {(n, k): fn for n, d in built.items() for k, fn in d.items()}
    res = interleaved(flat, rounds)
    ceiling = 1e-3
    for name in built:
        cells = [f"{res[name, k][0] * 1e3:.3f} / {res[name, k][1] * 1e3:.3f} ms" for k in ("sample", "get", "rb")]
        lines.append(f"| `{name}` | {cells[0]} ({res[name, 'sample'][1] / ceiling:.2f}x the 1 ms ceiling) "
                     f"| {cells[1]} | {cells[2]} |")
    inner, narrow = res[slice_name, "inner"], res[narrow_name, "inner"]
    before, after = res[slice_name, "sample"], res[narrow_name, "sample"]
    lines += ["", (f"TorchRL's `SliceSampler.sample` reads every column of its rows itself (`storage[index]` in "
                   f"`_finalize_index`, for done/terminated/is_init): {inner[0] * 1e3:.3f} / {inner[1] * 1e3:.3f} ms "
                   f"of its time; its index arithmetic is the rest (median "
                   f"{(before[1] - inner[1]) * 1e3:.3f} ms). `NarrowSliceSampler` reads "
                   f"{', '.join(map(str, flags.keys))} alone there: {narrow[0] * 1e3:.3f} / {narrow[1] * 1e3:.3f} ms; "
                   f"its sample takes {after[1] / before[1]:.2f}x TorchRL's (median), "
                   f"{after[0] / ceiling:.2f}x / {after[1] / ceiling:.2f}x the 1 ms ceiling (min / median).")]
    return lines


def profile(root: Path, calls: int = 500) -> None:
    """Prints where ``NarrowSliceSampler.sample`` spends its time (cProfile, ``calls`` calls at 50M rows)."""
    import cProfile
    import pstats

    storage = ShardedStorage(root)
    sampler = NarrowSliceSampler(slice_len=SLICE, trajectories=storage.episodes, cache_values=True)
    sampler.sample(storage, BATCH)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        sampler.sample(storage, BATCH)
    prof.disable()
    pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


def measure_traj_key(rows: int, rounds: int) -> list[str]:
    """``traj_key="episode"`` (the storage scanned) against ``trajectories=storage.episodes``, at ``rows``."""
    root = build(DATA / f"rows{rows}", rows, max(rows // 4, 1000))
    storage = ShardedStorage(root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_key = SliceSampler(slice_len=SLICE, traj_key="episode", cache_values=False)
        by_key_cached = SliceSampler(slice_len=SLICE, traj_key="episode", cache_values=True)
        given = SliceSampler(slice_len=SLICE, trajectories=storage.episodes, cache_values=True)
        t0 = time.perf_counter()
        by_key_cached.sample(storage, BATCH)
        first_scan = time.perf_counter() - t0
        res = interleaved({"key": lambda: by_key.sample(storage, BATCH),
                           "given": lambda: given.sample(storage, BATCH)}, max(rounds // 4, 5))
    return [(f"At {rows:,} rows: `SliceSampler(traj_key='episode')` (cache_values=False: the storage read "
            f"at every call) {res['key'][1] * 1e3:.1f} ms per sample against "
            f"`trajectories=storage.episodes` {res['given'][1] * 1e3:.3f} ms: "
            f"**{res['key'][1] / res['given'][1]:.0f}x**; with cache_values=True the first call's scan "
            f"takes {first_scan * 1e3:.1f} ms (a one-off).")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000_000)
    parser.add_argument("--shard-rows", type=int, default=2_000_000)
    parser.add_argument("--small-rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "samplers.md"))
    parser.add_argument("--profile", action="store_true", help="print NarrowSliceSampler.sample's profile instead")
    args = parser.parse_args()
    root = build(DATA / f"rows{args.rows}", args.rows, args.shard_rows)
    if args.profile:
        profile(root)
        return
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = ["# Samplers", "", (f"torch {torch.__version__}, {sys.platform}, {os.cpu_count()} CPUs, load average "
                                f"{load} at the start; ceiling 1 ms per batch of {BATCH} indices."), ""]
    lines += measure_large(root, args.rounds)
    lines += [""] + measure_traj_key(args.small_rows, args.rounds) + [""]
    write_results(args.out, lines)


if __name__ == "__main__":
    main()
