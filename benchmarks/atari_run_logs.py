"""Full-size Atari DQN ``replay_logs`` of real episodes, several checkpoints per run, streamed to disk.

Each game is played by a uniformly random policy in the Arcade Learning
Environment with Dopamine's preprocessing (sticky actions 0.25, each action
repeated 4 frames, a max over the last two, an ``INTER_AREA`` resize to 84x84
grayscale; no no-op starts, no end on life loss, episodes cut at 27,000 steps)
and added to a circular buffer of ``capacity`` rows exactly as batch_rl's
logged replay buffer does: ``stack - 1`` zero transitions before every
episode, row ``g % C``, and a log when ``add_count % C == C - 1``. So
checkpoint ``k`` holds transitions ``kC .. (k+1)C - 2`` in rows ``0 .. C - 2``
and transition ``kC - 1`` in row ``C - 1``: every frame is real and none is
reused (nothing is cycled from a pool).

The observation file of a checkpoint (7.06 GB of frames at C = 1,000,000) is
never held in memory: rows are written to its gzip stream as they are played,
the last row when the lap ends. A finished run is marked by ``complete.json``
and skipped next time.

Run: ``.venv/bin/python benchmarks/atari_run_logs.py --dest bench_data/full_scale/logs``
(two games at a time, one per core; the default ``--runs Pong:3 Breakout:1
Seaquest:1 SpaceInvaders:1`` plays 6,000,000 steps, about 1,700 steps/s per core).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_atari_dqn import _gz_writer, _npy_header  # the same streamed .npy.gz files

STACK = 4
MAX_STEPS = 27_000
BLOCK = 4096  # frames per write to the gzip stream
# 4 games at C = 1,000,000, and 3 checkpoints of one run: 6M real frames, ~35 min on 2 idle cores
RUNS = ("Pong:3", "Breakout:1", "Seaquest:1", "SpaceInvaders:1")


def _rom(game: str) -> str:
    import ale_py

    return ale_py.roms.get_rom_path("".join("_" + c.lower() if c.isupper() else c for c in game).lstrip("_"))


class _Player:
    """One ALE emulator with Dopamine's preprocessing and a random policy."""

    def __init__(self, game: str, seed: int) -> None:
        import ale_py

        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
        self.ale = ale = ale_py.ALEInterface()
        ale.setInt("random_seed", seed)
        ale.setFloat("repeat_action_probability", 0.25)
        ale.setInt("frame_skip", 1)
        ale.loadROM(_rom(game))
        self.actions = ale.getMinimalActionSet()
        self.rng = np.random.default_rng(seed)
        self.screens = np.empty((2, 210, 160), np.uint8)
        import cv2

        cv2.setNumThreads(1)  # one emulator per core: the resize's thread pool only adds overhead

    def frame(self) -> np.ndarray:
        import cv2

        return cv2.resize(np.maximum(self.screens[0], self.screens[1]), (84, 84), interpolation=cv2.INTER_AREA)

    def reset(self) -> np.ndarray:
        self.ale.reset_game()
        self.ale.getScreenGrayscale(self.screens[0])
        self.screens[1] = self.screens[0]
        return self.frame()

    def step(self) -> tuple[int, float, bool, np.ndarray]:
        a = int(self.rng.integers(len(self.actions)))
        reward = 0.0
        for k in range(4):
            reward += self.ale.act(self.actions[a])
            if k >= 2:
                self.ale.getScreenGrayscale(self.screens[k - 2])
            if self.ale.game_over():
                if k < 2:
                    self.ale.getScreenGrayscale(self.screens[0])
                if k < 3:
                    self.screens[1] = self.screens[0]
                break
        return a, reward, self.ale.game_over(), self.frame()


def _save(path: Path, arr: np.ndarray) -> None:
    with gzip.open(path, "wb", compresslevel=1) as f:
        np.save(f, arr, allow_pickle=False)


class _Lap:
    """The checkpoint file being written: rows ``0 .. C - 2`` streamed, row ``C - 1`` carried in."""

    def __init__(self, d: Path, index: int, capacity: int) -> None:
        self.d, self.index, self.c = d, index, capacity
        self.carry = (None, 0, 0.0, 0)  # row C - 1: transition kC - 1 (zeros in checkpoint 0)
        self.obs = _gz_writer(d / f"$store$_observation_ckpt.{index}.gz")
        self.obs.write(_npy_header(np.dtype(np.uint8), (capacity, 84, 84)))
        self.block = np.zeros((BLOCK, 84, 84), np.uint8)
        self.fill = 0
        self.action = np.zeros(capacity, np.int32)
        self.reward = np.zeros(capacity, np.float32)
        self.terminal = np.zeros(capacity, np.uint8)
        self.row = 0

    def put(self, obs: np.ndarray | None, action: int, reward: float, terminal: int) -> None:
        self.block[self.fill] = 0 if obs is None else obs
        self.fill += 1
        self.action[self.row], self.reward[self.row], self.terminal[self.row] = action, reward, terminal
        self.row += 1
        if self.fill == BLOCK:
            self.obs.write(self.block.tobytes())
            self.fill = 0

    def close(self, add_count: int) -> None:
        obs, action, reward, terminal = self.carry
        self.obs.write(self.block[: self.fill].tobytes())
        self.obs.write((np.zeros((84, 84), np.uint8) if obs is None else obs).tobytes())
        self.obs.close()
        self.action[-1], self.reward[-1], self.terminal[-1] = action, reward, terminal
        for name, arr in (("action", self.action), ("reward", self.reward), ("terminal", self.terminal)):
            _save(self.d / f"$store$_{name}_ckpt.{self.index}.gz", arr)
        _save(self.d / f"add_count_ckpt.{self.index}.gz", np.array(add_count, np.int64))
        cursor = add_count % self.c
        _save(self.d / f"invalid_range_ckpt.{self.index}.gz",
              np.array([(cursor - 1 + k) % self.c for k in range(STACK + 1)], np.int64))


class _Buffer:
    """batch_rl's logged circular buffer, streamed: a checkpoint when ``add_count % C == C - 1``."""

    def __init__(self, d: Path, capacity: int, checkpoints: int) -> None:
        self.d, self.c, self.checkpoints = d, capacity, checkpoints
        self.lap, self.add_count, self.logged = _Lap(d, 0, capacity), 0, 0
        self.last_terminal = True

    def put(self, obs: np.ndarray | None, action: int, reward: float, terminal: int) -> bool:
        """Adds one transition; True once the last checkpoint is logged."""
        if self.add_count % self.c == self.c - 1:
            self.lap.carry = (None if obs is None else obs.copy(), action, reward, terminal)
        else:
            self.lap.put(obs, action, reward, terminal)
        self.add_count += 1
        if self.add_count % self.c == self.c - 1:
            self.lap.close(self.add_count)
            self.logged += 1
            if self.logged == self.checkpoints:
                return True
            self.lap = _Lap(self.d, self.logged, self.c)
        return False


def write_run(dest: Path, game: str, capacity: int, checkpoints: int, seed: int) -> dict:
    """Plays ``game`` until ``checkpoints`` laps of ``capacity`` transitions are logged."""
    run = dest / game / "1"
    done = run / "complete.json"
    if done.is_file():
        return json.loads(done.read_text())
    d = run / "replay_logs"
    d.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    player = _Player(game, seed)
    buf = _Buffer(d, capacity, checkpoints)
    episodes, lengths, finished = 0, [], False
    while not finished:
        for _ in range(STACK - 1):
            if buf.put(None, 0, 0.0, 0):
                finished = True
                break
        obs, t = player.reset(), 0
        while not finished:
            action, reward, over, nxt = player.step()
            t += 1
            finished = buf.put(obs, action, reward, int(over))
            obs = nxt
            if over or t >= MAX_STEPS:
                episodes += 1
                lengths.append(t)
                break
    info = {"game": game, "capacity": capacity, "checkpoints": checkpoints, "episodes_completed": episodes,
            "mean_length": float(np.mean(lengths)) if lengths else 0.0, "seconds": time.perf_counter() - t0}
    done.write_text(json.dumps(info))
    return info


def _one(args: tuple) -> dict:
    return write_run(*args)


def generate(dest: Path, runs: list[str] = list(RUNS), capacity: int = 1_000_000, jobs: int = 2) -> list[dict]:
    """Plays every ``GAME:CHECKPOINTS`` of ``runs`` not yet complete under ``dest``, ``jobs`` at a time."""
    parsed = [(r.split(":")[0], int(r.split(":")[1]) if ":" in r else 1) for r in runs]
    work = [(Path(dest), g, capacity, k, 1000 + i) for i, (g, k) in enumerate(parsed)]
    out = []
    with Pool(jobs) as pool:
        for info in pool.imap_unordered(_one, work):
            print(json.dumps(info), flush=True)
            out.append(info)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", default="bench_data/full_scale/logs")
    ap.add_argument("--runs", nargs="+", default=list(RUNS),
                    help="GAME:CHECKPOINTS, e.g. Pong:3 (one run of each game)")
    ap.add_argument("--capacity", type=int, default=1_000_000)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    generate(Path(args.dest), args.runs, args.capacity, args.jobs)


if __name__ == "__main__":
    main()
