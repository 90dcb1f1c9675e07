"""ShardedStorage reads against a numpy ceiling and TorchRL's Atari DQN storage.

Run: ``.venv/bin/python benchmarks/bench_storage.py [--shards 52 --rows-per-shard 1000]``
Writes ``benchmarks/results/storage.md``.

(a) ``ShardedStorage.get`` of 128 random rows (observation, next observation,
    scalars) vs the ceiling: a plain numpy gather of the same rows from the same
    memmap files (route by shard, ``np.take(..., out=..., mode="clip")``).
(b) ``rb.sample()`` with RandomSampler (128) and SliceSampler(slice_len=64) at 128.
(c) The same reads through ``torchrl.data.datasets.atari_dqn._AtariStorage`` over
    the same frames written in its layout (one split per shard).
(d) Cost per batch at 10x more rows (sparse files, same shard size).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from tensordict import TensorDict
from torchrl.data import TensorDictReplayBuffer
from torchrl.data.datasets.atari_dqn import _AtariStorage  # peer under comparison
from torchrl.data.replay_buffers import RandomSampler, SliceSampler

from common import identity_collate, timeit, write_results

from torchrl_ext import EpisodeTable, ShardedStorage, read_manifest
from torchrl_ext.format import ShardInfo, column_path, write_manifest, write_td_meta
from torchrl_ext.synthetic import write_synthetic

BATCH = 128


def ceiling_reader(root: Path):
    """Plain numpy over the same memmap files: route once by shard, then per column and
    touched shard one ``np.take(..., out=..., mode="clip")`` into a preallocated buffer.

    It skips what a storage must do on top: restoring request order, episode
    ends, final observations and building a TensorDict.
    """
    m = read_manifest(root)
    offsets = np.concatenate(([0], np.cumsum([s.rows for s in m.shards])))
    cols = [(c, [np.memmap(column_path(root / s.dir, c.key), dtype=c.dtype, mode="r",
                           shape=(s.rows, *c.shape)) for s in m.shards]) for c in m.schema]
    bufs = {c.key: np.empty((2 * BATCH, *c.shape), c.dtype) for c, _ in cols}

    def plan(rows):
        shard = np.searchsorted(offsets, rows, side="right") - 1
        order = np.argsort(shard, kind="stable")
        srt = shard[order]
        cuts = np.concatenate(([0], np.flatnonzero(srt[1:] != srt[:-1]) + 1, [rows.size]))
        return srt, rows[order] - offsets[srt], cuts

    def read(idx: np.ndarray, frames_only: bool = False) -> dict:
        both = np.concatenate((idx, np.minimum(idx + 1, offsets[-1] - 1)))  # rows + next rows
        plans = {"rows": plan(idx), "both": plan(both)}
        for col, maps in cols:
            is_frame = col.key == ("observation",)
            if frames_only and not is_frame:
                continue
            srt, local, cuts = plans["both" if is_frame else "rows"]
            buf = bufs[col.key]
            for a, b in zip(cuts[:-1], cuts[1:]):
                np.take(maps[srt[a]], local[a:b], axis=0, out=buf[a:b], mode="clip")
        return bufs

    return read, None


def write_atari_layout(storage: ShardedStorage, dest: Path) -> None:
    """The same frames in TorchRL's Atari DQN layout: one split directory per shard."""
    offsets = np.concatenate(([0], np.cumsum([s.rows for s in storage.manifest.shards])))
    for i in range(storage.num_shards):
        td = storage[int(offsets[i]):int(offsets[i + 1])]
        n = td.shape[0]
        obs = torch.zeros((n + 1, *td["observation"].shape[1:]), dtype=torch.uint8)
        obs[:-1] = td["observation"]
        split = TensorDict({"data": TensorDict({
            "observation": obs,
            "action": td["action"].int(),
            "next": {"reward": td["next", "reward"][:, 0], "terminated": td["next", "terminated"][:, 0].to(torch.uint8)},
        }, [])}, [])
        split["data"].batch_size = []
        split.memmap(dest / str(i), num_threads=0)


def make_sparse(template: Path, dest: Path, shards: int, rows_per_shard: int, ep_len: int) -> None:
    """A dataset of ``shards x rows_per_shard`` rows backed by sparse files (zeros)."""
    m = read_manifest(template)
    (dest / "shards").mkdir(parents=True)
    m.shards = []
    for i in range(shards):
        d = dest / "shards" / f"{i:06d}"
        for col in m.schema:
            p = column_path(d, col.key)
            p.parent.mkdir(parents=True, exist_ok=True)
            with open(p, "wb") as f:
                f.truncate(rows_per_shard * col.row_bytes)
        write_td_meta(d, m.schema, rows_per_shard)
        m.shards.append(ShardInfo(f"shards/{i:06d}", rows_per_shard, rows_per_shard * sum(c.row_bytes for c in m.schema), ""))
    total = shards * rows_per_shard
    firsts = np.arange(0, total, ep_len)
    table = EpisodeTable.open(dest / m.episodes, create=True)
    table.insert((int(e), int(f), int(min(ep_len, total - f)), False, {}) for e, f in enumerate(firsts))
    table.close()
    m.num_rows, m.num_episodes, m.event_logs = total, len(firsts), []
    write_manifest(dest, m)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shards", type=int, default=52)
    ap.add_argument("--rows-per-shard", type=int, default=1000)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "storage.md"))
    args = ap.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    work = Path(tempfile.mkdtemp(prefix="bench_storage_"))
    try:
        root = write_synthetic(work / "ds", episodes=args.shards * args.rows_per_shard // 100,
                               length=(50, 150), shard_rows=args.rows_per_shard)
        storage = ShardedStorage(root)
        n = len(storage)
        read_ceiling, _ = ceiling_reader(root)
        write_atari_layout(storage, work / "atari")
        atari = _AtariStorage(work / "atari")
        assert len(atari) == n
        idx_pool = [rng.integers(0, n, BATCH) for _ in range(64)]
        it = iter(range(10**9))

        def pick():
            return idx_pool[next(it) % len(idx_pool)]

        res = {}
        res["ceiling"] = timeit(lambda: read_ceiling(pick()), args.iters)
        res["ceiling_frames"] = timeit(lambda: read_ceiling(pick(), frames_only=True), args.iters)
        res["get"] = timeit(lambda: storage.get(pick()), args.iters)
        res["torchrl_get"] = timeit(lambda: atari.get(torch.from_numpy(pick())), max(args.iters // 5, 5))
        rb = TensorDictReplayBuffer(storage=storage, sampler=RandomSampler(), batch_size=BATCH)
        res["rb_random"] = timeit(rb.sample, args.iters)
        rb_s = TensorDictReplayBuffer(storage=storage, batch_size=BATCH,
                                      sampler=SliceSampler(slice_len=64, trajectories=storage.episodes, cache_values=True))
        res["rb_slice"] = timeit(rb_s.sample, args.iters)
        rb_ta = TensorDictReplayBuffer(storage=atari, sampler=RandomSampler(), batch_size=BATCH, collate_fn=identity_collate)
        res["torchrl_rb_random"] = timeit(rb_ta.sample, max(args.iters // 5, 5))
        rb_ts = TensorDictReplayBuffer(storage=atari, batch_size=BATCH, collate_fn=identity_collate,
                                       sampler=SliceSampler(slice_len=64, trajectories=atari.episodes, cache_values=True))
        res["torchrl_rb_slice"] = timeit(rb_ts.sample, max(args.iters // 5, 5))
        # (d) flat cost at 10x rows: sparse datasets with the same shard size
        make_sparse(root, work / "sparse1", args.shards, args.rows_per_shard, 100)
        make_sparse(root, work / "sparse10", args.shards, 10 * args.rows_per_shard, 100)
        make_sparse(root, work / "sparse10s", 10 * args.shards, args.rows_per_shard, 100)
        for p in [*(work / "sparse1").rglob("*.memmap"), *(work / "sparse10").rglob("*.memmap"),
                  *(work / "sparse10s").rglob("*.memmap")]:
            with open(p, "rb") as f:  # both sizes fully in the page cache, like the real dataset
                while f.read(64 << 20):
                    pass
        s1, s10 = ShardedStorage(work / "sparse1"), ShardedStorage(work / "sparse10")
        res["sparse1"] = timeit(lambda: s1.get(rng.integers(0, len(s1), BATCH)), args.iters)
        res["sparse10"] = timeit(lambda: s10.get(rng.integers(0, len(s10), BATCH)), args.iters)
        s10s = ShardedStorage(work / "sparse10s")
        res["sparse10s"] = timeit(lambda: s10s.get(rng.integers(0, len(s10s), BATCH)), args.iters)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def ms(k):
        return f"{res[k] * 1e3:.3f}"

    def verdict(ok):
        return "met" if ok else "**missed**"

    a = res["get"] / res["ceiling"]
    af = res["get"] / res["ceiling_frames"]
    b1, b2 = res["rb_random"] / res["ceiling"], res["rb_slice"] / res["ceiling"]
    c_get, c_rb, c_sl = res["torchrl_get"] / res["get"], res["torchrl_rb_random"] / res["rb_random"], res["torchrl_rb_slice"] / res["rb_slice"]
    d = res["sparse10"] / res["sparse1"]
    ds = res["sparse10s"] / res["sparse1"]
    rows = [
        ("(a) `ShardedStorage.get`, 128 random rows", ms("get"), f"{a:.2f}x ceiling", "<= 1.5x", verdict(a <= 1.5)),
        ("ceiling: numpy route + `np.take` on the same memmaps, all columns", ms("ceiling"), "1.00x", "", ""),
        ("ceiling, frames only (observation + next observation)", ms("ceiling_frames"), f"ours {af:.2f}x of it", "", "(lower bound of any read)"),
        ("(b) `rb.sample()` RandomSampler, 128", ms("rb_random"), f"{b1:.2f}x ceiling", "<= 2.5x", verdict(b1 <= 2.5)),
        ("(b) `rb.sample()` SliceSampler(slice_len=64, trajectories=storage.episodes), 128", ms("rb_slice"), f"{b2:.2f}x ceiling", "<= 2.5x", verdict(b2 <= 2.5)),
        ("(c) TorchRL `_AtariStorage.get`, 128 random rows", ms("torchrl_get"), f"ours {c_get:.1f}x faster", ">= 10x", verdict(c_get >= 10)),
        ("(c) TorchRL `rb.sample()` RandomSampler, 128", ms("torchrl_rb_random"), f"ours {c_rb:.1f}x faster", ">= 10x", verdict(c_rb >= 10)),
        ("(c) TorchRL `rb.sample()` SliceSampler(64), 128", ms("torchrl_rb_slice"), f"ours {c_sl:.1f}x faster", ">= 10x", verdict(c_sl >= 10)),
        (f"(d) `get` at {args.shards * args.rows_per_shard} rows (sparse)", ms("sparse1"), "1.00x", "", ""),
        (f"(d) `get` at {10 * args.shards * args.rows_per_shard} rows: 10x rows per shard", ms("sparse10"), f"{d:.2f}x growth", "<= 1.3x", verdict(d <= 1.3)),
        (f"(d) `get` at {10 * args.shards * args.rows_per_shard} rows: 10x shards", ms("sparse10s"), f"{ds:.2f}x growth", "<= 1.3x", verdict(ds <= 1.3)),
    ]
    lines = [
        "## Storage reads",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_storage.py --shards {args.shards} --rows-per-shard {args.rows_per_shard}`",
        f"Dataset: {n} rows of 84x84 uint8 frames in {args.shards} shards (page cache warm); "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"python {sys.version.split()[0]}. Times are the median of 5 repeats of the mean per batch.",
        "",
        "| operation | ms / batch | ratio | target | result |",
        "|---|---|---|---|---|",
        *[f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} |" for r in rows],
        "",
        "Notes:",
        "- The storage beats the all-column ceiling because small columns (action, reward, flags, ids) are",
        "  held in RAM (`cache_bytes`, 128 MiB by default) and gathered once, while the ceiling gathers them",
        "  shard by shard from the memmaps. Against the frames-only lower bound it pays for request order,",
        "  episode ends, final observations and the TensorDict.",
        "- (c) slices: TorchRL's `SliceSampler` reads `storage[index]` a second time in `_finalize_index`",
        "  to fetch done flags, so every frame of a slice is read twice through any storage; that fixed cost",
        "  keeps the ratio under 10x. `EventSliceSampler` (torchrl_ext.samplers) reads each row once.",
        "- (d) 10x rows in the same shards stays flat. With 10x shards most rows of a random batch sit in",
        "  a shard of their own; the gather then copies row by row with plain ints (one Python step per",
        "  row whatever the shard count) instead of one fancy-index gather per touched shard; what is left",
        "  of the growth is that per-row step. Larger shards (the writer's default is 256 MiB, ~36k Atari",
        "  frames) keep batches touching few shards.",
        "",
    ]
    write_results(args.out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
