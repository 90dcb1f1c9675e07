"""Encoded observation columns (zstd, h264 video) against the same frames stored raw.

Run: ``.venv/bin/python benchmarks/bench_encodings.py [--gray-frames 8500 --rgb-frames 4000 --passes 2]``
Writes ``benchmarks/results/encodings.md``.

Data: real ALE frames (``ale_frames.py``, cached under ``bench_data/encodings/``):
84x84 gray frames of Pong, Breakout and Seaquest and 128x128 RGB frames of
Riverraid, whole episodes of a random policy. Every dataset is written from
the same frames in this run; each timed row measures its peer (the raw dataset
or a bare-library ceiling) right before itself and reports the ratio; the
timing part runs ``--passes`` times to show its stability.

(a) bytes on disk per frame and ratio vs raw, per game, a 50M-frame projection, video PSNR.
(b) ``rb.sample()``: 128 random rows, the same through ``FrameStackStorage(stack=4)``,
    ``SliceSampler`` 2 x 64, ``EventSliceSampler`` 4 x 128 around reward events.
(c) zstd ``chunk_rows`` 16 (default) / 1 / 1 with a dictionary / 4 / 64.
(d) 10x the shards for the same frames; (e) ``verify="first-read"``;
(f) video windows against a bare PyAV loop over the stored packets.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torchrl.data import TensorDictReplayBuffer
from torchrl.data.replay_buffers import RandomSampler, SliceSampler

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ale_frames
from common import write_results
from encodings_timing import BarePyAV, ColumnWindows, Row, chunk_bytes_by_game, column_sizes, cycle, profile_top

from torchrl_ext import EventIndex, EventSliceSampler, ShardedStorage
from torchrl_ext.datasets import FrameStackStorage
from torchrl_ext.encodings import (
    Video,
    Zstd,
    psnr,
)

BATCH, NWIN, WIN = 128, 4, 128
GRAY_GAMES = ("Pong", "Breakout", "Seaquest")
RGB_GAME = "Riverraid"
FRAME = 84 * 84
RAW_ATARI_RUN = 50_000_000  # frames of one DQN Replay run (50 checkpoints of 1M)
# key, label, options (chunk_rows=16 is the default Zstd())
VARIANTS = (
    ("z16", "zstd chunk_rows=16 (default)", Zstd()),
    ("z1", "zstd chunk_rows=1", Zstd(chunk_rows=1)),
    ("z1d", "zstd chunk_rows=1 + dictionary", Zstd(chunk_rows=1, dictionary=True)),
    ("z4", "zstd chunk_rows=4", Zstd(chunk_rows=4)),
    ("z64", "zstd chunk_rows=64", Zstd(chunk_rows=64)),
)
LABEL = {k: label for k, label, _ in VARIANTS}


def rb(storage, sampler, batch: int = BATCH) -> TensorDictReplayBuffer:
    return TensorDictReplayBuffer(storage=storage, sampler=sampler, batch_size=batch)


def open_storage(root: Path, stack: int = 1, **kw) -> ShardedStorage:
    """Encoded storages decode every batch afresh (``decode_cache_bytes=0``) unless told otherwise."""
    kw.setdefault("decode_cache_bytes", 0)
    return FrameStackStorage(root, stack=stack, **kw) if stack > 1 else ShardedStorage(root, **kw)


def sampling(root: Path, kind: str, windows: list | None = None, stack: int = 1, **kw):
    """Factory of ``rb.sample`` (or of ``storage.get`` over fixed windows) on a fresh storage of ``root``."""
    def make():
        s = open_storage(root, stack, **kw)
        if kind == "random":
            return rb(s, RandomSampler()).sample
        if kind == "slices":
            return rb(s, SliceSampler(num_slices=2, trajectories=s.episodes, cache_values=True)).sample
        if kind == "events":
            return rb(s, EventSliceSampler(root, event_regex="reward", win_len=WIN, bias=WIN // 2, seed=1),
                      NWIN * WIN).sample
        pick = cycle(windows)
        return lambda: s.get(pick())
    return make


# ------------------------------------------------------------------------ sizes, windows, peers
def warm(root: Path) -> None:
    """Reads every file under ``root`` once so the page cache holds it."""
    for p in root.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                while f.read(16 << 20):
                    pass


def reward_windows(gray: list, rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of NWIN windows of WIN rows around reward steps inside their episodes (global rows)."""
    starts, base = [], 0
    for f in gray:
        for a, n in zip(f.ep_first.tolist(), f.ep_len.tolist()):
            ev = np.flatnonzero(f.reward[a:a + n])
            if n >= WIN and ev.size:
                starts.append(base + a + np.clip(ev - WIN // 2, 0, n - WIN))
        base += len(f.obs)
    starts = np.concatenate(starts)
    return [np.concatenate([np.arange(s, s + WIN) for s in rng.choice(starts, NWIN)]) for _ in range(64)]


def touched_shards(offsets: np.ndarray, rng: np.random.Generator) -> float:
    n = int(offsets[-1])
    return float(np.mean([np.unique(np.searchsorted(offsets, rng.integers(0, n, BATCH), side="right")).size
                          for _ in range(200)]))


def first_batch(root: Path, mode: str, repeats: int) -> float:
    """Median time of the first ``rb.sample`` of fresh storages opened with ``verify=mode``."""
    firsts = []
    for _ in range(repeats):
        buf = rb(open_storage(root, verify=mode), RandomSampler())
        t0 = time.perf_counter()
        buf.sample()
        firsts.append(time.perf_counter() - t0)
    return statistics.median(firsts)


def verified(root: Path):
    """Factory of ``rb.sample`` on a ``verify="first-read"`` storage whose shards are all checked."""
    def make():
        s = open_storage(root, verify="first-read")
        s.verify()
        return rb(s, RandomSampler()).sample
    return make


def setup(args, work: Path, r: dict, rng: np.random.Generator) -> dict[str, Path]:
    """Writes every dataset (not timed), checks losslessness and quality, records sizes."""
    gray, rgb, n_gray, n_rgb = r["gray"], r["rgb"], r["n_gray"], r["n_rgb"]
    sr, sr10 = args.shard_rows, args.shard_rows // 10
    video = Video(codec="h264", crf=18, gop=32, pix_fmt="yuv444p")
    plan = [("raw", gray, sr, None), *[(k, gray, sr, {"observation": o}) for k, _, o in VARIANTS],
            ("raw10", gray, sr10, None), ("z16_10", gray, sr10, {"observation": Zstd()}),
            ("rgb_raw", [rgb], sr, None), ("video", [rgb], sr, {"observation": video}),
            *[(f"z1d_{f.game}", [f], sr, {"observation": Zstd(chunk_rows=1, dictionary=True)}) for f in gray]]
    roots, r["write_s"] = {}, {}
    for key, frames, rows_per_shard, enc in plan:
        roots[key] = work / key
        t1 = time.perf_counter()
        ale_frames.write_dataset(roots[key], frames, rows_per_shard, enc)
        r["write_s"][key] = time.perf_counter() - t1
    r["events_note"] = None
    try:
        for key in ("raw", *LABEL):
            EventIndex.build(roots[key])
        sampling(roots["raw"], "events")()()
    except Exception as err:  # noqa: BLE001 - the events API may be mid-change: fall back, and say so
        r["events_note"] = f"{type(err).__name__}: {err}"
    for key, root in roots.items():
        if not key.startswith("z1d_"):  # one-game dictionary datasets are only measured for size
            warm(root)
    r["sizes"] = {k: column_sizes(root) for k, root in roots.items()}
    bounds = np.concatenate(([0], np.cumsum([len(f.obs) for f in gray])))
    r["by_game"] = {k: chunk_bytes_by_game(roots[k], bounds) / np.diff(bounds) for k in LABEL}
    r["by_game"]["z1d_own"] = np.asarray([chunk_bytes_by_game(roots[f"z1d_{f.game}"], np.asarray([0, len(f.obs)]))[0]
                                          / len(f.obs) for f in gray])
    vs = open_storage(roots["video"])
    dec = np.concatenate([vs.get(np.arange(a, min(a + sr, n_rgb)))["observation"].numpy()
                          for a in range(0, n_rgb, sr)])
    w0 = sr - 40  # check the bare loop on rows crossing chunks and a shard boundary
    got = BarePyAV(roots["video"]).read(w0, WIN + 1, np.empty((WIN + 1, 128, 128, 3), np.uint8))
    r["bare_equal"] = bool((got[:-1] == dec[w0:w0 + WIN]).all() and (got[-1] == dec[w0 + WIN]).all())
    r["psnr"] = psnr(dec, rgb.obs)
    r["psnr_min"] = min(psnr(dec[i], rgb.obs[i]) for i in range(n_rgb))
    raw_s, probe = open_storage(roots["raw"]), rng.integers(0, n_gray, 512)
    want = raw_s.get(probe)
    r["lossless"] = all(bool((open_storage(roots[k]).get(probe)[c] == want[c]).all())
                        for k in LABEL for c in ("observation", ("next", "observation")))
    r["shards"] = (raw_s.num_shards, open_storage(roots["raw10"]).num_shards)
    r["touched"] = tuple(touched_shards(open_storage(roots[k]).reader.offsets, rng) for k in ("raw", "raw10"))
    return roots


def timed_rows(args, roots: dict[str, Path], r: dict, rng: np.random.Generator) -> list[Row]:
    gray, rgb, n_rgb = r["gray"], r["rgb"], r["n_rgb"]
    sr, sr10 = args.shard_rows, args.shard_rows // 10
    ev_kind = "events" if r["events_note"] is None else "windows"
    ev_name = "`EventSliceSampler`" if r["events_note"] is None else "`get` of"
    ev_windows = reward_windows(gray, rng)
    rows: list[Row] = []
    for k, name, opts in VARIANTS:
        prof = k == "z16"
        budget = 2 * BATCH * opts.chunk_rows * FRAME
        rows += [
            Row(f"{name}: random 128 + next obs", sampling(roots[k], "random"),
                "raw, same sampler", sampling(roots["raw"], "random"), 3.0, k in ("z16", "z1d")),
            Row(f"{name}: random 128, `FrameStackStorage(stack=4)`, decode cache {budget / 2**20:.1f} MiB",
                sampling(roots[k], "random", stack=4, decode_cache_bytes=budget),
                "raw, same", sampling(roots["raw"], "random", stack=4), 3.0, prof),
            Row(f"{name}: `SliceSampler` 2 x 64", sampling(roots[k], "slices"),
                "raw, same sampler", sampling(roots["raw"], "slices"), 2.0, prof),
            Row(f"{name}: {ev_name} {NWIN} x {WIN} around reward events", sampling(roots[k], ev_kind, ev_windows),
                "raw, same windows", sampling(roots["raw"], ev_kind, ev_windows), 2.0, prof),
        ]
        if k == "z16":
            rows.append(Row(f"{name}: random 128, `FrameStackStorage(stack=4)`, decode cache 0",
                            sampling(roots[k], "random", stack=4), "raw, same",
                            sampling(roots["raw"], "random", stack=4), None))
    for k, k10, name in (("raw", "raw10", "raw"), ("z16", "z16_10", "zstd default")):
        rows.append(Row(f"{name}: random 128 over {r['shards'][1]} shards of {sr10} rows",
                        sampling(roots[k10], "random"), f"same frames in {r['shards'][0]} shards of {sr} rows",
                        sampling(roots[k], "random"), 1.3, True))
    first = rgb.ep_first
    v_pool = [np.concatenate([np.arange(s, s + WIN) for s in
                              (first[e] + rng.integers(0, rgb.ep_len[e] - WIN) for e in
                               rng.integers(0, len(first), NWIN))]) for _ in range(16)]
    vbuf = np.empty((WIN + 1, 128, 128, 3), np.uint8)

    def window_reads(cls):
        def make():
            reader, pick = cls(roots["video"]), cycle(v_pool)

            def run():
                for w0 in pick()[::WIN].tolist():
                    reader.read(w0, min(WIN + 1, n_rgb - w0), vbuf)  # the window and its next frame
            return run
        return make

    bare_loop = window_reads(BarePyAV)

    rows += [
        Row(f"video h264 crf 18 yuv444p gop 32: `ChunkedColumnReader.read` of the same {NWIN} windows "
            f"of {WIN} + 1 rows (the column decoder alone)", window_reads(ColumnWindows),
            "bare PyAV loop (1 thread) over the same stored packets", bare_loop, 1.3, True),
        Row(f"video h264 crf 18 yuv444p gop 32: `get` {NWIN} x {WIN} rows + next obs, default decode_threads",
            sampling(roots["video"], "windows", v_pool), "bare PyAV loop (1 thread) over the same stored packets",
            bare_loop, 1.3),
        Row(f"video h264 crf 18 yuv444p gop 32: `get` {NWIN} x {WIN} rows + next obs, decode_threads=1",
            sampling(roots["video"], "windows", v_pool, decode_threads=1),
            "bare PyAV loop (1 thread) over the same stored packets", bare_loop, 1.3, True),
        Row(f"video: `get` {NWIN} x {WIN} rows + next obs", sampling(roots["video"], "windows", v_pool),
            "raw RGB dataset, same windows", sampling(roots["rgb_raw"], "windows", v_pool), None),
    ]
    for k, name in (("raw", "raw"), ("z16", "zstd default")):
        rows.append(Row(f"{name}: `verify=\"first-read\"`, later batches (all shards checked)", verified(roots[k]),
                        "`verify=\"off\"`, same", sampling(roots[k], "random"), None))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gray-frames", type=int, default=8500, help="frames per gray game (whole episodes)")
    ap.add_argument("--rgb-frames", type=int, default=4000)
    ap.add_argument("--shard-rows", type=int, default=480, help="a multiple of 160 keeps the 10x smaller shards a multiple of 16 rows")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--cache", default=str(Path(__file__).resolve().parent.parent / "bench_data" / "encodings"))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "encodings.md"))
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message="event index of")
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    t_start = time.perf_counter()
    gray = [ale_frames.load_or_collect(args.cache, g, args.gray_frames) for g in GRAY_GAMES]
    rgb = ale_frames.load_or_collect(args.cache, RGB_GAME, args.rgb_frames, rgb=True, size=128)
    git = ["git", "-C", str(Path(__file__).resolve().parent.parent)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "torchrl_ext"], capture_output=True, text=True, check=False).stdout
    r: dict = {"commit": f"{head or '?'}" + (" plus uncommitted library changes" if dirty.strip() else ""),
               "args": args, "gray": gray, "rgb": rgb, "n_gray": sum(len(f.obs) for f in gray),
               "n_rgb": len(rgb.obs), "t_frames": time.perf_counter() - t_start}
    work = Path(tempfile.mkdtemp(prefix="bench_encodings_"))
    try:
        t0 = time.perf_counter()
        roots = setup(args, work, r, rng)
        r["t_setup"] = time.perf_counter() - t0
        rows = timed_rows(args, roots, r, rng)
        r["loads"], r["first_read"] = [], {"raw": [], "z16": []}
        for _ in range(args.passes):
            r["loads"].append(os.getloadavg()[0])
            for row in rows:
                row.run(args.repeats)
            for k in r["first_read"]:
                r["first_read"][k].append({m: first_batch(roots[k], m, args.repeats) for m in ("off", "first-read")})
            r["loads"].append(os.getloadavg()[0])
        r["profiles"] = {row.label: profile_top(row.make(), max(5, int(0.5 / max(row.values[0][0], 1e-4))))
                         for row in rows if row.profile and row.missed()}
        r["rows"] = rows
        r["t_total"] = time.perf_counter() - t_start
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_results(args.out, report(r))
    return 0


# ------------------------------------------------------------------------ report
def report(r: dict) -> list[str]:
    args, gray, rgb, n_gray, n_rgb = r["args"], r["gray"], r["rgb"], r["n_gray"], r["n_rgb"]
    sz, rows = r["sizes"], r["rows"]
    sr, sr10 = args.shard_rows, args.shard_rows // 10

    def obs(k):
        return sz[k]["obs"] + sz[k]["final"]

    def ms(x):
        return f"{x * 1e3:.2f} ms"

    def line(cells):
        return "| " + " | ".join(cells) + " |"

    def smaller(k):
        return obs("raw") / obs(k)

    def mean_ratio(key, what):
        row = next(x for x in rows if x.label.startswith(f"{LABEL[key]}: {what}"))  # the first such row
        return float(np.mean(row.ratios))

    ev = "`EventSliceSampler`" if r["events_note"] is None else "`get` of"
    patterns = (("random 128 +", "random 128"), ("random 128, `FrameStack", "frame stacks"),
                ("`SliceSampler`", "slices"), (ev, "event windows"))
    picks = []
    for what, name in patterns:
        fastest = min(mean_ratio(k, what) for k in LABEL)
        k = max((k for k in LABEL if mean_ratio(k, what) <= 1.15 * fastest), key=smaller)
        picks.append(f"{name}: {LABEL[k].removeprefix('zstd ')} ({mean_ratio(k, what):.1f}x raw; fastest "
                     f"{fastest:.1f}x; default {mean_ratio('z16', what):.1f}x)")
    choice = ("- Which chunk_rows: per read pattern, the most compact setting whose time is within 15% of the "
              "fastest (mean ratio over passes): " + "; ".join(picks) + ". Sizes: "
              + ", ".join(f"{LABEL[k].removeprefix('zstd ')} {smaller(k):.0f}x" for k in LABEL)
              + " smaller than raw. ")
    k_rand = min(LABEL, key=lambda k: mean_ratio(k, "random 128 +"))
    gain = mean_ratio("z16", "random 128 +") / mean_ratio(k_rand, "random 128 +")
    if k_rand != "z16" and gain > 1.15:
        choice += (f"So: 16 (the default) unless batches are uniform random single frames, where "
                   f"{LABEL[k_rand].removeprefix('zstd ')} is {gain:.1f}x faster at {smaller(k_rand):.0f}x "
                   f"instead of {smaller('z16'):.0f}x smaller")
    else:
        choice += "So: 16 (the default) for every pattern measured here"
    best_rand = mean_ratio(k_rand, "random 128 +")
    choice += (f"; no chunk size brings random batches within 3x of raw (best {best_rand:.1f}x)." if best_rand > 3
               else ".")

    games = " / ".join(f.game for f in gray)
    size_rows = [("raw memmap (84x84 gray)", f"{obs('raw') / n_gray:.0f}", "1.00x", " / ".join(["7056"] * len(gray)),
                  f"{sz['raw']['total'] / n_gray:.0f}", "", "")]
    for k, name, _ in VARIANTS:
        size_rows.append((name, f"{obs(k) / n_gray:.0f}", f"{smaller(k):.1f}x",
                          " / ".join(f"{x:.0f}" for x in r["by_game"][k]), f"{sz[k]['total'] / n_gray:.0f}",
                          ">= 20x", "met" if smaller(k) >= 20 else "**missed**"))
    own = [f"z1d_{f.game}" for f in gray]
    own_obs, own_total = sum(obs(k) for k in own), sum(sz[k]["total"] for k in own)
    size_rows.append(("zstd chunk_rows=1 + dictionary, one dataset per game (each trains on its own first episode)",
                      f"{own_obs / n_gray:.0f}", f"{obs('raw') / own_obs:.1f}x",
                      " / ".join(f"{x:.0f}" for x in r["by_game"]["z1d_own"]), f"{own_total / n_gray:.0f}",
                      ">= 20x", "met" if obs("raw") / own_obs >= 20 else "**missed**"))
    per, per_all, raw_run = obs("z16") / n_gray, sz["z16"]["total"] / n_gray, RAW_ATARI_RUN * FRAME
    size_rows += [
        (f"projection: one {RAW_ATARI_RUN // 10**6}M-frame Atari run at the zstd default's bytes/frame",
         f"{per * RAW_ATARI_RUN / 1e9:.1f} GB", f"{raw_run / (per * RAW_ATARI_RUN):.0f}x vs {raw_run / 1e9:.0f} GB raw",
         "", f"{per_all * RAW_ATARI_RUN / 1e9:.1f} GB", "", ""),
        (f"raw memmap (128x128 RGB, {RGB_GAME})", f"{obs('rgb_raw') / n_rgb:.0f}", "1.00x", "",
         f"{sz['rgb_raw']['total'] / n_rgb:.0f}", "", ""),
        ((f"video h264 crf 18 yuv444p gop 32 (PSNR {r['psnr']:.1f} dB over all frames, worst frame "
         f"{r['psnr_min']:.1f} dB)"), f"{obs('video') / n_rgb:.0f}", f"{obs('rgb_raw') / obs('video'):.1f}x", "",
         f"{sz['video']['total'] / n_rgb:.0f}", "", ""),
    ]
    timed = []
    for row in rows:
        if "later batches" in row.label:  # the first batch of fresh storages goes right before
            k, name = ("raw", "raw") if row.label.startswith("raw") else ("z16", "zstd default")
            fr = r["first_read"][k]
            timed.append(((f"{name}: `verify=\"first-read\"`, first batch of a fresh storage "
                          f"(~{r['touched'][0]:.0f} unchecked shards)"), ms(fr[0]["first-read"]),
                          f"`verify=\"off\"`, same: {ms(fr[0]['off'])}",
                          " / ".join(f"{p['first-read'] / p['off']:.2f}x" for p in fr), "(none)", ""))
        v, pv = row.values[0]
        timed.append((row.label, ms(v), f"{row.peer_label}: {ms(pv)}", " / ".join(f"{x:.2f}x" for x in row.ratios),
                      f"<= {row.target:g}x" if row.target is not None else "(none)", row.verdict()))
    missed = [x for x in rows if x.missed()]
    vdef, v1 = (next(x for x in rows if x.label.endswith(end)) for end in ("default decode_threads", "decode_threads=1"))
    vthreads = float(np.mean([a[0] / b[0] for a, b in zip(vdef.values, v1.values)]))
    lines = [
        "## Encoded columns: zstd and video against raw",
        "",
        (f"Command: `.venv/bin/python benchmarks/bench_encodings.py --gray-frames {args.gray_frames} "
        f"--rgb-frames {args.rgb_frames} --shard-rows {sr} --passes {args.passes}`"),
        "",
        "Data: real ALE frames of a random policy, whole episodes, cached as `.npy` under `bench_data/encodings/`: "
        f"{n_gray} gray 84x84 frames ("
        + ", ".join(f"{f.game} {len(f.obs)} in {len(f.ep_len)} episodes" for f in gray)
        + ") from `torchrl_ext.generate.make_atari_env` (DQN preprocessing: frame skip 4 with a max over the last "
        "two frames, sticky actions, no-op starts, Pillow box resize as opencv is not installed), and "
        f"{n_rgb} RGB frames of {RGB_GAME} (`obs_type=\"rgb\"`, `frameskip=4`, box-resized to 128x128, "
        f"{len(rgb.ep_len)} episodes). Every dataset is written in this run from the same frames, {sr} rows per "
        f"shard ({r['shards'][0]} gray shards), games one after the other. {platform.machine()}, "
        f"{os.cpu_count()} cores shared with other jobs' test runs; 1-minute load average "
        f"{' -> '.join(f'{x:.1f}' for x in r['loads'])} (start and end of each pass); torch {torch.__version__}, "
        f"python {sys.version.split()[0]}, torchrl_ext at {r['commit']}. Setup (writing {len(sz)} datasets, checks; not timed) "
        f"{r['t_setup']:.0f} s; whole run {r['t_total']:.0f} s.",
        "",
        "### Size on disk",
        "",
        ("Apparent file sizes. Observation column = its shard files (and dictionary) plus the raw final frame of "
        f"each episode; per game: chunk bytes per frame ({games})."),
        "",
        (f"| dataset | observation bytes / frame | smaller than raw | per game ({games}) | whole dataset bytes / frame "
        "| target | result |"),
        "|---|---|---|---|---|---|---|",
        *[line(x) for x in size_rows],
        "",
        "### Reads",
        "",
        (f"Page cache warm for every dataset (all files read before timing). Each row alternates {args.repeats} "
        "repeats of its peer and of itself (each repeat: the mean per call over ~80 ms of calls) and reports "
        "the medians and the median of the per-repeat ratios; ratio per pass (pass 1 / pass 2), times from "
        "pass 1; a target counts as met only if every pass meets it. `verify` rows: first batch = median over "
        f"{args.repeats} fresh storages."),
        "",
        "| operation | measured | peer or ceiling (same run) | ratio | target | result |",
        "|---|---|---|---|---|---|",
        *[line(x) for x in timed],
        "",
        "Notes:",
        (f"- zstd is lossless: every zstd dataset reads back equal to raw ({'checked' if r['lossless'] else '**NOT EQUAL**'}"
        " on 512 random rows, observation and next observation)."),
        ("- Encoded storages are opened with `decode_cache_bytes=0`: every batch decodes the chunks it touches, as "
        f"on a dataset much larger than the decoded-chunk cache (the default 64 MiB would hold "
        f"~{64 * 2**20 / (n_gray * FRAME):.0%} of these {n_gray} frames and serve later batches from earlier ones). "
        "The frame-stack rows instead get a cache of two batches' chunks, which the stack's second gather (the "
        f"history frames) reuses; that is ~{2 * BATCH * 16 / n_gray:.0%} of this set's chunks for chunk_rows=16 "
        f"(~{min(1, 2 * BATCH * 64 / n_gray):.0%} for 64), so some hits come from the previous batch; the "
        "`decode cache 0` row is the other bound."),
        ("- A random row decodes its whole chunk: chunk_rows x 7 KiB of zstd output per requested frame (its next "
        "frame is usually in the same chunk) against one 7 KiB copy for raw; one-row chunks decode only what is "
        "asked but pay the per-chunk Python work (index lookup, crc32, decompressor call, copy) ~256 times per "
        "batch."),
        choice,
        ("- The dictionary (`Zstd(chunk_rows=1, dictionary=True)`) is trained by the writer on the first episode "
        f"and stored under `dicts/` (counted above). In the three-game dataset it is {gray[0].game}'s and serves "
        "all three games; the one-dataset-per-game row is what a one-game dataset (e.g. one DQN Replay run) gets."),
        (f"- Shard count: the same {n_gray} frames written with {sr} and with {sr10} rows per shard, so only the "
        "number of shards changes (same bytes in the page cache, same chunks for chunk_rows=16). 128 random rows "
        f"touch ~{r['touched'][0]:.0f} of {r['shards'][0]} shards vs ~{r['touched'][1]:.0f} of {r['shards'][1]}; "
        "each touched shard costs one routed gather per column not held in RAM."),
        ("- `verify=\"first-read\"`: the first batch recomputes the crc32 of every file of each shard it touches "
        "(here from the page cache; from disk add the read time); later batches look shards up in a set. Encoded "
        f"shards have {sz['raw']['total'] / sz['z16']['total']:.0f}x fewer bytes to check. The peer is a fresh "
        "`verify=\"off\"` storage, whose first batch also pays one-time costs (decompression contexts, page tables)."),
        ("- Video: every reader decodes each covered GOP from its key frame up to the last needed frame (the "
        "window's next frame included). The column reader alone (`ChunkedColumnReader.read`, no cache) decodes "
        "straight into its output and converts only the window's frames to RGB. `get` goes through the chunk "
        "cache path even with `decode_cache_bytes=0` (the storage always passes a `DecodedChunkCache`, so "
        "`ChunkedColumnReader.gather` never takes its direct video path): it converts every decoded frame, "
        "those of the first GOP before the window too, then copies observation and next observation (2 x "
        f"{NWIN * WIN} frames), the other columns and builds the TensorDict; the raw RGB `get` row is that "
        "copying alone. The bare loop feeds the same stored packets to "
        "one `av.CodecContext.create(\"h264\", \"r\")` (one codec thread, like each of the reader's decoders) with one kept "
        "`VideoReformatter` and converts only the window's frames (the profile below shows `get`'s extra time in "
        "`ShardReader._gather` and `ChunkedColumnReader.gather`, which copy the decoded frames into the batch); "
        "its frames "
        f"{'equal' if r['bare_equal'] else '**differ from**'} the storage's on rows crossing chunks and shards. By default (`decode_threads=None`) the reader decodes "
        "the chunks of one read on 2 threads for video, 1 for zstd; here that takes "
        f"{vthreads:.2f}x the one-thread time (mean over passes, 2 cores shared with other jobs)."),
        (f"- Write time (not a target): zstd default {r['write_s']['z16']:.1f} s, dictionary "
        f"{r['write_s']['z1d']:.1f} s, raw {r['write_s']['raw']:.1f} s for {n_gray} frames; video "
        f"{r['write_s']['video']:.1f} s vs raw {r['write_s']['rgb_raw']:.1f} s for {n_rgb} frames; one process."),
    ]
    if r["events_note"]:
        lines.append(f"- `EventSliceSampler` failed in this run ({r['events_note']}); the event rows read {NWIN} "
                     f"fixed windows of {WIN} rows around reward steps with `storage.get` instead.")
    if missed:
        lines.append("- Why reads miss: the raw peer copies each frame once from the page cache, while an encoded read "
                     "inflates every touched chunk (zstd's `decompress`, the largest single cost of random reads, where "
                     "each row inflates chunk_rows frames) and runs Python per touched chunk and per touched "
                     "shard (`ChunkedColumnReader.gather` sorting, grouping and copying, `ShardReader._gather` "
                     "looping over shards). Windows and slices touch few chunks, so there the per-call Python is "
                     "a larger share than the decompression. Where the time goes in missed rows (cProfile, share "
                     "of own time, top functions):")
        lines += [f"  - {x.label}: {r['profiles'][x.label]}" for x in missed if x.label in r["profiles"]]
    lines.append("")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
