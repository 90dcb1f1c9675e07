"""Atari DQN Replay Dataset logs -> a sharded dataset of real episodes.

Source format (Dopamine's ``replay_memory/circular_replay_buffer.py``,
``OutOfGraphReplayBuffer``, and google-research ``batch_rl``'s
``baselines/replay_memory/logged_replay_buffer.py`` /
``fixed_replay/replay_memory/fixed_replay_buffer.py``): every checkpoint ``i``
of a run's ``replay_logs`` directory holds gzip-wrapped ``np.save`` arrays

=====================================  ======================================
``$store$_observation_ckpt.<i>.gz``    uint8 ``[C, 84, 84]``
``$store$_action_ckpt.<i>.gz``         int32 ``[C]``
``$store$_reward_ckpt.<i>.gz``         float32 ``[C]``
``$store$_terminal_ckpt.<i>.gz``       uint8 ``[C]``
``add_count_ckpt.<i>.gz``              int64 scalar: transitions added so far
``invalid_range_ckpt.<i>.gz``          int64 ``[stack_size + update_horizon]``
=====================================  ======================================

Writer semantics: a circular buffer of capacity ``C`` (1,000,000 in the
published data) stores transition number ``g`` at row ``g % C``. Before the
first transition and after every terminal one, ``stack_size - 1`` all-zero
padding transitions are added. The logged buffer saves a checkpoint when,
after a real transition, ``add_count % C == C - 1``; so checkpoint 0 never
wrote its last row and later checkpoints start with row ``C - 1`` (the oldest)
followed by rows ``0 .. C - 2``. A checkpoint saved with ``add_count = N``
holds transitions ``max(0, N - C) .. N - 1``; a final partial checkpoint's
rows past ``N % C`` are stale and are skipped because earlier checkpoints
already cover them. Because the check runs only after a real transition,
padding can jump over ``C - 1`` and a whole lap is then never logged: such a
gap cuts the episode before it (``truncated``) and the transitions after it
are skipped until the next episode start, since padding cannot be told apart
from real data without context. ``invalid_range`` lists rows a single
checkpoint cannot sample from; after chronological reconstruction across
checkpoints they are ordinary rows (or stale ones), so it is validated only.

Output: one episode per real episode (padding is never written), in TorchRL's
TED layout: ``observation`` uint8 ``[84, 84]``, ``action`` int32,
``("next", "reward")`` float32 ``[1]``, ``("next", "done"/"terminated"/"truncated")``
bool ``[1]``. Episode metadata: ``game``, ``run``, ``checkpoint`` (of the first
step), ``return``, ``first_index`` (global transition number of the first
step) and ``terminated``. Events: ``reward:+1``/``reward:-1`` at rewarded steps
and ``episode_end`` at terminal steps.

Conversion streams: each checkpoint's columns are decompressed in bounded
chunks into raw files under ``<root>/.atari-tmp`` (in parallel with
``num_procs``), then episodes are read back with positioned file reads and
handed to :class:`~torchrl_ext.ShardWriter`. Resuming continues after the last
committed episode.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from ..writer import EpisodeTable
from ..format import read_manifest
from ..writer import ShardWriter
from .npy_stream import DEFAULT_CHUNK_BYTES, copy_npy, load_npy_gz

__all__ = ["DONE_NAME", "convert_replay_logs", "decompress_checkpoint", "list_checkpoints"]

logger = logging.getLogger(__name__)

DONE_NAME = "atari_dqn.json"
TMP_NAME = ".atari-tmp"
_COLUMNS = {"observation": (np.uint8, 3), "action": (np.int32, 1), "reward": (np.float32, 1),
            "terminal": (np.uint8, 1)}
_PATTERN = re.compile(r"^\$store\$_observation_ckpt\.(\d+)\.gz$")


def _replay_dir(src_dir: Path) -> Path:
    return src_dir / "replay_logs" if (src_dir / "replay_logs").is_dir() else src_dir


def list_checkpoints(src_dir: str | os.PathLike) -> list[int]:
    """Checkpoint indices found in a ``replay_logs`` directory (or its parent), sorted."""
    d = _replay_dir(Path(src_dir))
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: replay-log directory not found; expected <run>/replay_logs")
    return sorted(int(m.group(1)) for p in d.iterdir() if (m := _PATTERN.match(p.name)))


def decompress_checkpoint(src_dir: str, index: int, tmp_dir: str, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> dict[str, Any]:
    """Decompresses checkpoint ``index`` into raw files ``<tmp_dir>/<column>.raw``.

    Returns the checkpoint's ``add_count``, capacity and observation shape. Runs in
    worker processes, so it takes and returns plain values.
    """
    d = _replay_dir(Path(src_dir))
    tmp = Path(tmp_dir)
    tmp.mkdir(parents=True, exist_ok=True)
    lengths: dict[str, int] = {}
    obs_shape: tuple[int, ...] = ()
    for name, (dtype, ndim) in _COLUMNS.items():
        path = d / f"$store$_{name}_ckpt.{index}.gz"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: replay-log column is missing; download checkpoint {index} again")
        with open(tmp / f"{name}.raw", "wb") as out:
            header = copy_npy(path, out, dtype=dtype, ndim=ndim, chunk_bytes=chunk_bytes)
        lengths[f"$store$_{name}_ckpt.{index}.gz"] = header.shape[0]
        if name == "observation":
            obs_shape = header.shape[1:]
    if len(set(lengths.values())) != 1:
        raise ValueError(
            f"{d}: checkpoint {index} columns have different lengths {lengths}; expected one "
            "capacity for all, download the checkpoint again"
        )
    capacity = next(iter(lengths.values()))
    add_count = load_npy_gz(d / f"add_count_ckpt.{index}.gz", ndim=0)
    if add_count.dtype.kind not in "iu" or int(add_count) < 0:
        raise ValueError(f"{d}/add_count_ckpt.{index}.gz: expected a non-negative integer scalar, found {add_count!r}")
    invalid = load_npy_gz(d / f"invalid_range_ckpt.{index}.gz", ndim=1)
    if invalid.dtype.kind not in "iu" or (invalid.size and (invalid.min() < 0 or invalid.max() >= capacity)):
        raise ValueError(
            f"{d}/invalid_range_ckpt.{index}.gz: expected row indices in [0, {capacity}), found {invalid!r}"
        )
    return {"index": index, "add_count": int(add_count), "capacity": capacity, "obs_shape": list(obs_shape)}


@dataclass
class _Checkpoint:
    """A decompressed checkpoint: transitions ``start .. stop - 1`` in time order."""

    index: int
    tmp: Path
    capacity: int
    start: int
    stop: int
    obs_shape: tuple[int, ...]
    action: np.ndarray = field(repr=False)
    reward: np.ndarray = field(repr=False)
    terminal: np.ndarray = field(repr=False)

    @classmethod
    def load(cls, info: dict[str, Any], tmp: Path) -> _Checkpoint:
        c, n = info["capacity"], info["add_count"]
        start, stop = max(0, n - c), n
        rows = np.arange(start, stop, dtype=np.int64) % c if c else np.zeros(0, np.int64)
        cols = {k: np.fromfile(tmp / f"{k}.raw", dtype=_COLUMNS[k][0])[rows] for k in ("action", "reward", "terminal")}
        return cls(info["index"], tmp, c, start, stop, tuple(info["obs_shape"]), **cols)

    def read_obs(self, p0: int, p1: int, out: np.ndarray) -> None:
        """Reads observations of time positions ``p0 .. p1 - 1`` into ``out`` (positioned reads, no mmap)."""
        frame = int(np.prod(self.obs_shape))
        flat = out.reshape(p1 - p0, frame)
        with open(self.tmp / "observation.raw", "rb") as f:
            p = p0
            while p < p1:
                row = (self.start + p) % self.capacity
                n = min(p1 - p, self.capacity - row)
                f.seek(row * frame)
                if f.readinto(memoryview(flat[p - p0:p - p0 + n]).cast("B")) != n * frame:
                    raise ValueError(f"{self.tmp}: decompressed observations are truncated")
                p += n


@dataclass
class _State:
    """Parser state carried from one checkpoint to the next."""

    pad: int = 0  # padding rows still expected before the next episode
    contextless: bool = True  # skip up to the next terminal: episode start unknown
    next_global: int = 0  # first transition not consumed yet
    segments: list[tuple[_Checkpoint, int, int]] = field(default_factory=list)


class _Converter:
    def __init__(self, writer: ShardWriter, game: str, run: int, stack_size: int) -> None:
        self.writer, self.game, self.run, self.stack = writer, game, run, stack_size
        self.dropped = 0

    def emit(self, segments: list[tuple[_Checkpoint, int, int]], terminated: bool) -> None:
        total = sum(b - a for _, a, b in segments)
        obs = np.empty((total, *segments[0][0].obs_shape), dtype=np.uint8)
        at = 0
        for c, a, b in segments:
            c.read_obs(a, b, obs[at:at + b - a])
            at += b - a
        action = np.concatenate([c.action[a:b] for c, a, b in segments]).astype(np.int32, copy=False)
        reward = np.concatenate([c.reward[a:b] for c, a, b in segments]).astype(np.float32, copy=False)
        t = len(action)
        done = np.zeros((t, 1), dtype=bool)
        done[-1] = True
        term = done if terminated else np.zeros_like(done)
        trunc = np.zeros_like(done) if terminated else done
        events = [(int(i), "reward:+1" if reward[i] > 0 else "reward:-1", float(reward[i]))
                  for i in np.flatnonzero(reward)]
        if terminated:
            events.append((t - 1, "episode_end", 1.0))
        first, p0 = segments[0][0], segments[0][1]
        self.writer.add_episode(
            {"observation": obs, "action": action,
             "next": {"reward": reward[:, None], "done": done, "terminated": term.copy(), "truncated": trunc}},
            metadata={"game": self.game, "run": self.run, "checkpoint": first.index,
                      "return": float(reward.sum(dtype=np.float64)), "first_index": first.start + p0,
                      "terminated": int(terminated)},
            events=events,
        )

    def cut(self, st: _State) -> None:
        if st.segments:
            self.emit(st.segments, terminated=False)
        st.segments = []
        st.contextless, st.pad = True, 0

    def feed(self, ck: _Checkpoint, st: _State) -> None:
        if ck.start > st.next_global:
            if st.next_global:
                logger.warning("checkpoint %d starts at transition %d, %d transitions were never logged",
                               ck.index, ck.start, ck.start - st.next_global)
            self.cut(st)
        p = max(st.next_global - ck.start, 0)
        if ck.start == 0 and p == 0:
            st.contextless, st.pad = False, self.stack - 1
        w = ck.stop - ck.start
        term = np.flatnonzero(ck.terminal[p:]) + p
        ti = 0
        while p < w:
            if st.contextless:
                while ti < len(term) and term[ti] < p:
                    ti += 1
                if ti == len(term):
                    self.dropped += w - p
                    p = w
                    break
                self.dropped += term[ti] + 1 - p
                p, st.contextless, st.pad = int(term[ti]) + 1, False, self.stack - 1
                continue
            if st.pad:
                k = min(st.pad, w - p)
                if ck.action[p:p + k].any() or ck.reward[p:p + k].any() or ck.terminal[p:p + k].any():
                    raise ValueError(
                        f"checkpoint {ck.index}: transitions {ck.start + p}..{ck.start + p + k - 1} should be "
                        f"zero padding before an episode start, found non-zero values; is stack_size={self.stack} right?"
                    )
                p += k
                st.pad -= k
                continue
            while ti < len(term) and term[ti] < p:
                ti += 1
            if ti == len(term):
                st.segments.append((ck, p, w))
                p = w
                break
            e = int(term[ti]) + 1
            st.segments.append((ck, p, e))
            self.emit(st.segments, terminated=True)
            st.segments, st.pad, p = [], self.stack - 1, e
        st.next_global = ck.stop


def _resume_state(root: Path, stack_size: int) -> tuple[_State, int]:
    m = read_manifest(root)
    if not m.num_episodes:
        return _State(), 0
    table = EpisodeTable.open(root / m.episodes)
    try:
        meta = table.metadata(m.num_episodes - 1)
    finally:
        table.close()
    bounds = int(meta["first_index"]) + int(meta["length"]) if "length" in meta else None
    if bounds is None:
        raise ValueError(f"{root}: episode table has no length column; cannot resume")
    st = _State(pad=0, contextless=True, next_global=bounds)
    if int(meta["terminated"]):
        st.contextless, st.pad = False, stack_size - 1
    return st, m.num_episodes


def convert_replay_logs(
    src_dir: str | os.PathLike,
    root: str | os.PathLike,
    *,
    checkpoints: list[int] | None = None,
    num_procs: int = 1,
    stack_size: int = 4,
    game: str = "",
    run: int = 0,
    shard_bytes: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Path:
    """Converts a run's ``replay_logs`` into a dataset at ``root`` (resumes if one exists).

    Args:
        src_dir: the run directory or its ``replay_logs`` subdirectory.
        root: output dataset directory.
        checkpoints: checkpoint indices to convert (default: all found).
        num_procs: processes decompressing checkpoints in parallel.
        stack_size: the writer's frame stack (padding is ``stack_size - 1`` rows).
        game, run: recorded in the manifest and the episode table.
        shard_bytes: shard size budget (``ShardWriter`` default when ``None``).
        chunk_bytes: decompression chunk; bounds peak memory.

    Returns:
        ``root``. ``<root>/atari_dqn.json`` marks a finished conversion.
    """
    src, root = Path(src_dir), Path(root)
    found = list_checkpoints(src)
    selected = sorted(found if checkpoints is None else {int(c) for c in checkpoints})
    missing = sorted(set(selected) - set(found))
    if missing or not selected:
        raise ValueError(f"{_replay_dir(src)}: checkpoints {missing or selected} requested, found {found}")
    if not isinstance(num_procs, int) or num_procs < 1:
        raise ValueError(f"`num_procs` must be a positive int, got {num_procs!r}")
    source = {"type": "atari_dqn", "game": game, "run": run, "checkpoints": selected, "stack_size": stack_size}
    if (root / "dataset.json").exists():
        old = read_manifest(root).source
        if old != source:
            raise ValueError(f"{root}: holds a conversion of {old}, asked for {source}; use another root")
        state, _ = _resume_state(root, stack_size)
        writer = ShardWriter.open(root)
    else:
        state = _State()
        writer = ShardWriter.create(root, shard_bytes=shard_bytes, source=source)
    tmp_root = root / TMP_NAME
    shutil.rmtree(tmp_root, ignore_errors=True)
    conv = _Converter(writer, game, run, stack_size)
    pool = ProcessPoolExecutor(num_procs, mp_context=get_context("spawn")) if num_procs > 1 else None
    try:
        _run(conv, state, src, selected, tmp_root, pool, num_procs, chunk_bytes)
        conv.cut(state)
        writer.close()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        writer.close()
        shutil.rmtree(tmp_root, ignore_errors=True)
    if conv.dropped:
        logger.info("skipped %d transitions whose episode start was not logged", conv.dropped)
    tmp = root / f".{DONE_NAME}.tmp"
    tmp.write_text(json.dumps({"complete": True, **source}), encoding="utf-8")
    os.replace(tmp, root / DONE_NAME)
    return root


def _run(conv: _Converter, state: _State, src: Path, selected: list[int], tmp_root: Path,
         pool: ProcessPoolExecutor | None, num_procs: int, chunk_bytes: int) -> None:
    from tqdm.auto import tqdm

    pending: list[tuple[int, Any]] = []
    d = _replay_dir(src)
    todo = [i for i in selected  # on resume, skip checkpoints that end before the last episode
            if int(load_npy_gz(d / f"add_count_ckpt.{i}.gz", ndim=0)) > state.next_global]
    live: list[_Checkpoint] = []
    for _ in tqdm(range(len(todo)), desc="checkpoints", unit="ckpt", disable=None):
        while pool is not None and todo and len(pending) < num_procs:
            i = todo.pop(0)
            pending.append((i, pool.submit(decompress_checkpoint, str(src), i, str(tmp_root / f"{i}"), chunk_bytes)))
        if pool is None:
            i = todo.pop(0)
            info = decompress_checkpoint(str(src), i, str(tmp_root / f"{i}"), chunk_bytes)
        else:
            i, fut = pending.pop(0)
            info = fut.result()
        ck = _Checkpoint.load(info, tmp_root / f"{i}")
        if ck.stop <= state.next_global:
            shutil.rmtree(ck.tmp, ignore_errors=True)
            continue
        conv.feed(ck, state)
        live.append(ck)
        held = {id(c) for c, _, _ in state.segments}
        for c in [c for c in live if id(c) not in held]:
            shutil.rmtree(c.tmp, ignore_errors=True)
            live.remove(c)
