"""Small Atari DQN ``replay_logs`` trees written with Dopamine's logged-buffer semantics.

``make_replay_logs`` plays random episodes into a circular buffer exactly as
Dopamine's ``OutOfGraphReplayBuffer`` + batch_rl's ``OutOfGraphLoggedReplayBuffer``
do (``stack_size - 1`` zero transitions before every episode, row ``g % C``,
a log after a real add when ``add_count % C == C - 1``, and at the end of
training ``log_final_buffer``, which stores the cursor ``add_count % C`` as the
add count) and returns its own record of every transition, so tests can
compute the expected episodes independently of the converter.

``final="running_total"`` writes the last file with the true add count
instead (the layout of Dopamine's own checkpoints); ``lose_laps`` skips the
regular log of those laps, as happens when padding jumps over the log point;
``stop_at`` ends training at the first add that reaches that many transitions.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Log:
    index: int
    stored: int  # what add_count_ckpt.<index>.gz holds
    add_count: int  # the true number of transitions added when it was written


@dataclass
class ReplayRecord:
    """Every transition ever added, padding included, in time order."""

    episode: np.ndarray  # -1 for padding
    step: np.ndarray
    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    terminal: np.ndarray
    logs: list[Log]
    capacity: int

    def expected_episodes(self, checkpoints: list[int] | None = None) -> list[dict]:
        """The episodes a correct conversion of ``checkpoints`` must produce, in time order."""
        c = self.capacity
        windows = sorted((max(0, g.add_count - c), g.add_count) for g in self.logs
                         if checkpoints is None or g.index in checkpoints)
        segments: list[list[int]] = []
        for a, b in windows:
            if segments and a <= segments[-1][1]:
                segments[-1][1] = max(segments[-1][1], b)
            else:
                segments.append([a, b])
        out = []
        for a, b in segments:
            known = a == 0
            g = a
            while g < b:
                ep = self.episode[g]
                if not known:
                    if self.terminal[g]:
                        known = True
                    g += 1
                    continue
                if ep < 0:
                    g += 1
                    continue
                start = g
                while g < b and self.episode[g] == ep:
                    g += 1
                terminated = bool(self.terminal[g - 1])
                out.append({
                    "obs": self.obs[start:g], "action": self.action[start:g],
                    "reward": self.reward[start:g], "terminated": terminated, "first_index": start,
                })
        return out

    def episode_at(self, g: int) -> tuple[int, int]:
        """``(first, stop)`` transitions of the episode holding transition ``g``."""
        ep = self.episode[g]
        idx = np.flatnonzero(self.episode == ep)
        return int(idx[0]), int(idx[-1]) + 1


def _save(path: Path, arr: np.ndarray) -> None:
    with gzip.open(path, "wb", compresslevel=1) as f:
        np.save(f, arr, allow_pickle=False)


def make_replay_logs(
    dest: str | Path,
    *,
    capacity: int = 1000,
    num_episodes: int = 25,
    mean_len: int = 120,
    stack_size: int = 4,
    update_horizon: int = 1,
    obs_shape: tuple[int, ...] = (84, 84),
    final: str | None = "batch_rl",
    cut_last: bool = True,
    stop_at: int | None = None,
    lose_laps: tuple[int, ...] = (),
    seed: int = 0,
) -> ReplayRecord:
    """Writes ``<dest>/replay_logs`` and returns the record of what was added.

    With ``stop_at``, episodes are played until the add that reaches ``stop_at``
    transitions (``num_episodes`` is then an upper bound, ``cut_last`` ignored).
    """
    rng = np.random.default_rng(seed)
    d = Path(dest) / "replay_logs"
    d.mkdir(parents=True, exist_ok=True)
    c = capacity
    store = {
        "observation": np.zeros((c, *obs_shape), np.uint8), "action": np.zeros(c, np.int32),
        "reward": np.zeros(c, np.float32), "terminal": np.zeros(c, np.uint8),
    }
    rec: dict[str, list] = {k: [] for k in ("episode", "step", "obs", "action", "reward", "terminal")}
    logs: list[Log] = []
    add_count = 0

    def log(stored: int) -> None:
        i = len(logs)
        for name, arr in store.items():
            _save(d / f"$store$_{name}_ckpt.{i}.gz", arr)
        _save(d / f"add_count_ckpt.{i}.gz", np.array(stored, dtype=np.int64))
        cursor = add_count % c
        inv = np.array([(cursor - update_horizon + k) % c for k in range(stack_size + update_horizon)], np.int64)
        _save(d / f"invalid_range_ckpt.{i}.gz", inv)
        logs.append(Log(i, stored, add_count))

    def put(ep: int, step: int, obs, action: int, reward: float, terminal: int) -> None:
        nonlocal add_count
        row = add_count % c
        store["observation"][row] = obs
        store["action"][row] = action
        store["reward"][row] = reward
        store["terminal"][row] = terminal
        for k, v in zip(rec, (ep, step, obs, action, reward, terminal)):
            rec[k].append(v)
        add_count += 1

    zero = np.zeros(obs_shape, np.uint8)
    done = False
    for ep in range(num_episodes if stop_at is None else 1 << 30):
        length = int(rng.integers(1, 2 * mean_len))
        last = stop_at is None and ep == num_episodes - 1
        for t in range(length):
            if add_count == 0 or store["terminal"][(add_count - 1) % c]:
                for _ in range(stack_size - 1):
                    put(-1, -1, zero, 0, 0.0, 0)
            obs = rng.integers(1, 256, size=obs_shape, dtype=np.uint8)
            reward = float(rng.choice([-1.0, 0.0, 0.0, 0.0, 1.0]))
            terminal = int(t == length - 1 and not (last and cut_last))
            put(ep, t, obs, int(rng.integers(0, 18)), reward, terminal)
            if add_count % c == c - 1 and add_count // c not in lose_laps:
                log(add_count)
            if stop_at is not None and add_count >= stop_at:
                done = True
                break
        if done:
            break
    if final == "batch_rl":
        log(add_count % c)
    elif final == "running_total" and add_count % c != c - 1:
        log(add_count)
    elif final not in (None, "batch_rl", "running_total"):
        raise ValueError(f"`final` must be 'batch_rl', 'running_total' or None, got {final!r}")
    return ReplayRecord(
        episode=np.asarray(rec["episode"], np.int64), step=np.asarray(rec["step"], np.int64),
        obs=np.stack(rec["obs"]), action=np.asarray(rec["action"], np.int32),
        reward=np.asarray(rec["reward"], np.float32), terminal=np.asarray(rec["terminal"], np.uint8),
        logs=logs, capacity=c,
    )


def npy_bytes(header: str, *, length: int | None = None, payload: bytes = b"") -> bytes:
    """A version 1.0 ``.npy`` file with header text ``header``, as written (hostile files for tests).

    ``length`` is the header length the file claims (default: the true one).
    """
    raw = header.encode("latin-1")
    n = len(raw) if length is None else length
    return b"\x93NUMPY\x01\x00" + n.to_bytes(2, "little") + raw + payload


def save_raw(path: str | Path, data: bytes) -> None:
    """Writes ``data`` gzip-wrapped, as the logs are."""
    Path(path).write_bytes(gzip.compress(data, compresslevel=1))
