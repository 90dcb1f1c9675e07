"""CrowdPlay-style human-play data: catalog filters, processed frames/s, import throughput, bytes on disk.

Run: ``.venv/bin/python benchmarks/bench_crowdplay.py [--episodes 6 --steps 400 --catalog 100000]``
Writes ``benchmarks/results/crowdplay.md``.

Peer: CrowdPlay's own path (``crowdplay_datasets`` 0.1.0), re-run on the same
episodes in the same process as a transcription written for the tests
(``torchrl_ext/interop/crowdplay/reference.py``): ``pickle.load`` of the
bz2 (or gzip) trajectory file, then the per-step ring framebuffer in Python,
as ``get_processed_trajectory`` does (its ``lru_cache`` wrapper is left out:
it raises on a step list). Catalog peer: load every keyword cell of
``dataset.sqlite`` (``pickle.loads``) and filter in Python, CrowdPlay's
documented way (its SQL over ``PickleType`` cells compares BLOBs and is wrong).
Frames: real ``ALE/SpaceInvaders-v5`` RGB frames, random policy, frame skip 1.
"""

from __future__ import annotations

import argparse
import bz2
import datetime
import gzip
import os
import pickle
import platform
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent

from common import write_results  # noqa: E402
from torchrl_ext.interop.crowdplay.maker import P0, ale_stream  # noqa: E402
from torchrl_ext.interop.crowdplay.reference import reference_processed  # noqa: E402

from torchrl_ext import ShardedStorage, ShardWriter, preprocess  # noqa: E402
from torchrl_ext.interop.crowdplay import (  # noqa: E402
    CrowdPlayFrames,
    import_crowdplay,
    make_trajectory,
    processed_trajectory,
    write_crowdplay_dir,
)
from torchrl_ext.storages import EpisodeView  # noqa: E402

GAMES = ["space_invaders", "qbert", "breakout", "riverraid", "beam_rider", "montezuma_revenge"]
TASKS = ["insideout", "plain", "left", "right", "rowbyrow", "outsidein"]
SOURCES = ["mturk", "email", "socialmedia"]
WHERE = "game = 'space_invaders' AND task = 'insideout' AND source = 'mturk' AND score >= 100"


def best(fn, repeats: int) -> float:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return min(out)


def tree_bytes(path: Path, suffixes: tuple[str, ...] = ()) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and (not suffixes or p.name.endswith(suffixes)))


def make_source(path: Path, episodes: int, steps: int, compression: str) -> Path:
    s = ale_stream(episodes * steps + 1, seed=1)
    eps = []
    for e in range(episodes):
        a = e * steps
        agent = {"frames": s.frames[a:a + steps], "actions": s.actions[a:a + steps], "rewards": s.rewards[a:a + steps],
                 "dones": np.arange(steps) == steps - 1, "ram": s.ram[a:a + steps], "lives": s.lives[a:a + steps],
                 "user_type": np.ones(steps, np.int64)}
        eps.append({"episode_id": f"{e:032x}", "environment_id": f"env{e}", "task_id": "space_invaders_insideout",
                    "steps": make_trajectory({P0: agent}),
                    "env_keyword_data": {"all": {"game": "space_invaders", "task": "insideout", "source": "mturk"}},
                    "keyword_data": {"all": {"created_on": datetime.datetime(2021, 10, 1)},
                                     P0: {"Score": int(s.rewards[a:a + steps].sum())}}})
    return write_crowdplay_dir(path, eps, compression=compression)


def crowdplay_processed(src: Path, compression: str) -> int:
    """CrowdPlay's path over every trajectory file: unpickle, then the per-step framebuffer."""
    frames = 0
    for f in sorted((src / "trajectories").iterdir()):
        with (bz2.open if compression == "bz2" else gzip.open)(f, "rb") as fh:
            steps = pickle.load(fh)  # trusted benchmark data; the library never does this
        obs = reference_processed(steps, P0)[0]
        frames += len(obs)
    return frames


def make_catalog(root: Path, cp_sqlite: Path, n: int) -> None:
    """``n`` one-row episodes with CrowdPlay-like metadata, and the same keyword data in CrowdPlay's SQLite."""
    rng = np.random.default_rng(0)
    game = rng.integers(len(GAMES), size=n)
    task = rng.integers(len(TASKS), size=n)
    source = rng.integers(len(SOURCES), size=n)
    score = rng.integers(0, 1000, size=n)
    play = rng.uniform(10, 300, size=n)
    ep = {"observation": np.zeros((1, 1), np.uint8), "action": np.zeros(1, np.int64),
          "next": {"reward": np.zeros((1, 1), np.float32), "done": np.ones((1, 1), bool)}}
    with ShardWriter.create(root, shard_rows=1 << 20) as w:
        for i in range(n):
            w.add_episode(ep, metadata={"episode_id": f"{i:032x}", "agent_id": P0, "game": GAMES[game[i]],
                                        "task": TASKS[task[i]], "source": SOURCES[source[i]],
                                        "Score": int(score[i]), "Active playtime": float(play[i])})
    conn = sqlite3.connect(cp_sqlite)
    conn.executescript("CREATE TABLE episodes (episode_id TEXT PRIMARY KEY, environment_id TEXT);"
                       "CREATE TABLE episodekeyworddata (episode_id, agent_id, key, value BLOB);"
                       "CREATE TABLE environmentkeyworddata (environment_id, agent_id, key, value BLOB);")
    conn.executemany("INSERT INTO episodes VALUES (?, ?)", [(f"{i:032x}", f"e{i:032x}") for i in range(n)])
    conn.executemany("INSERT INTO episodekeyworddata VALUES (?, ?, ?, ?)",
                     [(f"{i:032x}", P0, k, pickle.dumps(v)) for i in range(n)
                      for k, v in (("Score", int(score[i])), ("Active playtime", datetime.timedelta(seconds=play[i])))])
    conn.executemany("INSERT INTO environmentkeyworddata VALUES (?, ?, ?, ?)",
                     [(f"e{i:032x}", "all", k, pickle.dumps(v)) for i in range(n)
                      for k, v in (("game", GAMES[game[i]]), ("task", TASKS[task[i]]), ("source", SOURCES[source[i]]))])
    conn.commit()
    conn.close()


def crowdplay_catalog(cp_sqlite: Path) -> list[str]:
    """CrowdPlay's documented filter: every keyword cell unpickled into nested dicts, then Python."""
    conn = sqlite3.connect(cp_sqlite)
    kw: dict[str, dict] = {}
    for eid, agent, key, blob in conn.execute("SELECT episode_id, agent_id, key, value FROM episodekeyworddata"):
        kw.setdefault(eid, {}).setdefault(agent, {})[key] = pickle.loads(blob)
    env_kw: dict[str, dict] = {}
    for env, agent, key, blob in conn.execute("SELECT environment_id, agent_id, key, value FROM environmentkeyworddata"):
        env_kw.setdefault(env, {}).setdefault(agent, {})[key] = pickle.loads(blob)
    episodes = conn.execute("SELECT episode_id, environment_id FROM episodes").fetchall()
    conn.close()
    return [e for e, env in episodes
            if env_kw[env]["all"]["game"] == "space_invaders" and env_kw[env]["all"]["task"] == "insideout"
            and env_kw[env]["all"]["source"] == "mturk" and kw[e][P0]["Score"] >= 100]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=6, help="trajectories (default: 6)")
    parser.add_argument("--steps", type=int, default=400, help="frames per trajectory (default: 400)")
    parser.add_argument("--catalog", type=int, default=100_000, help="episodes in the catalog table (default: 100000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs, best kept (default: 3)")
    parser.add_argument("--out", default=str(HERE / "results" / "crowdplay.md"), help="results file")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-crowdplay-"))
    r = args.repeats
    try:
        t0 = time.perf_counter()
        src = {c: make_source(work / f"cp-{c}", args.episodes, args.steps, c) for c in ("bz2", "gz")}
        made = time.perf_counter() - t0
        frames = args.episodes * args.steps

        # (c) import
        def do_import():
            shutil.rmtree(work / "ds", ignore_errors=True)
            import_crowdplay(src["bz2"], work / "ds", progress=False)
        t_import = best(do_import, r)
        def unpickle_all():
            for f in sorted((src["bz2"] / "trajectories").iterdir()):
                with bz2.open(f, "rb") as fh:
                    pickle.load(fh)
        t_unpickle = best(unpickle_all, r)
        storage = ShardedStorage(work / "ds")

        # (b) processed frames/s
        ids = [f"{e:032x}" for e in range(args.episodes)]
        t_ours = best(lambda: [processed_trajectory(storage, i) for i in ids], r)
        t_ours4 = best(lambda: [processed_trajectory(storage, i, downsample_frequency=4) for i in ids], r)
        t_cp = {c: best(lambda c=c: crowdplay_processed(src[c], c), max(1, r - 1)) for c in ("bz2", "gz")}
        ours = processed_trajectory(storage, ids[0])
        with bz2.open(src["bz2"] / "trajectories" / f"{ids[0]}.pickle.bz2", "rb") as fh:
            theirs = reference_processed(pickle.load(fh), P0)
        same = all(np.array_equal(a, b) for a, b in zip(ours[0], theirs[0])) and len(ours[0]) == len(theirs[0])

        def do_preset():
            shutil.rmtree(work / "proc", ignore_errors=True)
            return preprocess(storage, CrowdPlayFrames(storage.root), work / "proc", num_workers=2, pbar=False)
        t_preset = best(do_preset, max(1, r - 1))
        proc = ShardedStorage(work / "proc")
        t_read = best(lambda: [proc.get(slice(a, a + 256)) for a in range(0, len(proc), 256)], r)
        same_preset = bool(np.array_equal(proc.get(slice(0, len(ours[0])))["observation"].numpy(), ours[0]))

        # (d) bytes
        b_ours = tree_bytes(work / "ds")
        b_bz2 = tree_bytes(src["bz2"])
        b_gz = tree_bytes(src["gz"])
        raw = frames * (210 * 160 * 3 + 128 + 8 * 4)

        # (a) catalog
        make_catalog(work / "catalog", work / "catalog-cp.sqlite", args.catalog)
        cat = ShardedStorage(work / "catalog")
        t_view = statistics.median([best(lambda: EpisodeView(cat, WHERE), 1) for _ in range(5)])
        t_select = statistics.median([best(lambda: cat.select_episodes(WHERE), 1) for _ in range(5)])
        t_kw = statistics.median([best(lambda: EpisodeView(cat, game="space_invaders", task="insideout",
                                                           source="mturk", Score__ge=100), 1) for _ in range(5)])
        t_cp_cat = best(lambda: crowdplay_catalog(work / "catalog-cp.sqlite"), 1)
        n_sel = EpisodeView(cat, WHERE).num_episodes
        assert n_sel == len(crowdplay_catalog(work / "catalog-cp.sqlite"))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    load = os.getloadavg()[0]
    ms = lambda s: f"{s * 1e3:.1f}"  # noqa: E731
    fps = lambda s, n=frames: f"{n / s:,.0f}"  # noqa: E731
    target = lambda ok: "met" if ok else "**missed**"  # noqa: E731
    lines = [
        "## CrowdPlay-style human-play data (`torchrl_ext.interop.crowdplay`)",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_crowdplay.py --episodes {args.episodes} --steps {args.steps} "
        f"--catalog {args.catalog} --repeats {r}`",
        f"{platform.machine()}, {os.cpu_count()} cores (1-minute load average {load:.1f}), python "
        f"{platform.python_version()}. {args.episodes} trajectories x {args.steps} real SpaceInvaders RGB frames "
        f"({frames} frames, {raw / 2**20:.0f} MiB raw) in CrowdPlay's layout (made in {made:.0f} s, not timed). "
        f"Times: best of {r} runs (CrowdPlay's processing: best of {max(1, r - 1)}); catalog: median of 5.",
        "",
        "| operation | time | throughput | ratio | target | result |",
        "|---|---|---|---|---|---|",
        f"| (a) catalog filter over {args.catalog:,} episodes, SQL `{WHERE}` -> `EpisodeView` | {ms(t_view)} ms | "
        f"{n_sel} episodes | {t_cp_cat / t_view:.0f}x faster than CrowdPlay | <= 50 ms | {target(t_view <= 0.05)} |",
        f"| (a) same, keyword filters `game=..., task=..., source=..., Score__ge=100` | {ms(t_kw)} ms | | | <= 50 ms | "
        f"{target(t_kw <= 0.05)} |",
        f"| (a) same, `storage.select_episodes(where)` (ids only) | {ms(t_select)} ms | | | | |",
        f"| (a) peer: CrowdPlay's way (unpickle every keyword cell, filter in Python) | {ms(t_cp_cat)} ms | | 1.00x | | |",
        f"| (b) `processed_trajectory` (84x84x4, every step) | {t_ours:.2f} s | {fps(t_ours)} frames/s | "
        f"{t_cp['bz2'] / t_ours:.1f}x CrowdPlay (bz2) | >= 10x | {target(t_cp['bz2'] / t_ours >= 10)} |",
        f"| (b) `processed_trajectory`, `downsample_frequency=4` | {t_ours4:.2f} s | {fps(t_ours4)} input frames/s | "
        f"{t_cp['bz2'] / t_ours4:.1f}x CrowdPlay (bz2, every step) | | |",
        f"| (b) peer: CrowdPlay's path, bz2 files (as shipped) | {t_cp['bz2']:.2f} s | {fps(t_cp['bz2'])} frames/s | "
        "1.00x | | |",
        f"| (b) peer: CrowdPlay's path, gzip files (its recommended re-pack) | {t_cp['gz']:.2f} s | {fps(t_cp['gz'])} "
        f"frames/s | ours {t_cp['gz'] / t_ours:.1f}x faster | | |",
        f"| (b) `preprocess` with the `CrowdPlayFrames` preset, 2 workers (once) | {t_preset:.2f} s | "
        f"{fps(t_preset)} frames/s | {t_cp['bz2'] / t_preset:.1f}x CrowdPlay (bz2) | | |",
        f"| (b) reading the processed dataset (`get`, 256 consecutive rows, with next obs) | {t_read:.2f} s | "
        f"{fps(t_read)} frames/s | {t_cp['bz2'] / t_read:.0f}x CrowdPlay (bz2) | | |",
        f"| (c) `import_crowdplay` (bz2 source, zstd frames) | {t_import:.2f} s | {fps(t_import)} frames/s | "
        f"{t_import / t_unpickle:.2f}x the source read | | |",
        f"| (c) ceiling: bz2 decompress + unpickle of every trajectory | {t_unpickle:.2f} s | {fps(t_unpickle)} frames/s | "
        "1.00x | | |",
        f"| (d) bytes on disk: imported dataset (zstd-9 frames and RAM, other columns raw, SQLite) | {b_ours / 2**20:.1f} MiB | | "
        f"{b_ours / b_bz2:.2f}x CrowdPlay bz2 | | |",
        f"| (d) CrowdPlay's bz2 pickles + dataset.sqlite | {b_bz2 / 2**20:.1f} MiB | | 1.00x | | |",
        f"| (d) CrowdPlay's gzip re-pack | {b_gz / 2**20:.1f} MiB | | {b_gz / b_bz2:.2f}x | | |",
        "",
        "Notes:",
        f"- Processed arrays are equal to the reference framebuffer's, array for array: {same} (checked in this run "
        f"on the first trajectory; the tests check every parameter set); the preset's output equals them: "
        f"{same_preset}.",
        "- Ours reads frames from zstd chunks and warps each raw frame once (max of 2 frames, gray, INTER_AREA); "
        "CrowdPlay decompresses the whole pickle and warps `stack_n` = 4 frames per step in a Python loop. With "
        "downsampling ours reads and warps only the frames the kept steps need.",
        "- The import is bounded by reading CrowdPlay's bz2 files (single-threaded bz2); the rest is zstd "
        "compression and shard writes.",
        "- Other jobs shared the 2 cores (see the load average): absolute times swing by up to 2x between runs and "
        "the (b) ratio with them (7.4x to 10.8x over three runs on this machine), so the 10x target is borderline; "
        "with `downsample_frequency=4` (frames 4 apart, the usual offline-RL setting) it is met with room.",
        "- Bytes: a random policy's SpaceInvaders frames barely change, which suits bz2's 900 kB blocks over a "
        "whole pickle; ours are zstd level 9 in 16-row chunks (so one random row decodes 16 frames, not an "
        "episode) plus raw int64 action/episode/step columns. Larger chunks (`chunk_rows=64`) shrink the frames "
        "by another ~35% at the cost of random access.",
        "- The catalog row times opening the episode table, the SQL select over typed columns and building the "
        "view's row map; CrowdPlay's peer is the least work its documented Python filter needs (no ORM objects), "
        "so the real gap is larger.",
        "",
    ]
    write_results(args.out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
