"""``generate``: play episodes in parallel workers and write them, in order, into a dataset."""

from __future__ import annotations

import logging
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..format import MANIFEST_NAME, read_manifest
from ..progress import ProgressBar
from ..validation import nonnegative_int, positive_int, user_path
from ..writer import ShardWriter
from .encode import FrameEncoder, unpack_episode
from .events import EventsFn
from .workers import ProcessExecutor

__all__ = ["generate", "GenerateStats", "EXECUTORS"]

logger = logging.getLogger(__name__)

EXECUTORS = ("process", "ray")


@dataclass
class GenerateStats:
    """What one :func:`generate` call did."""

    generated: int  # episodes played and written by this call
    skipped: int  # episodes already in the dataset (resume)
    steps: int  # env steps written by this call
    seconds: float
    restarts: int  # worker restarts after crashes
    first_episode_seconds: float = 0.0  # from the call until the first episode was written (start-up)
    last_episode_seconds: float = 0.0  # from the call until the last episode was written (before shut-down)

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else 0.0


def _check_picklable(name: str, fn: Any) -> None:
    if fn is None:
        return
    if not callable(fn):
        raise TypeError(f"`{name}` must be a callable, got {type(fn).__name__}")
    try:
        pickle.dumps(fn)
    except Exception as err:
        raise TypeError(
            f"`{name}` must be picklable to reach the workers, got {fn!r}; use a module-level "
            "function or functools.partial, not a lambda or local function"
        ) from err


def generate(
    env_fn: Callable[[], Any],
    policy_fn: Callable[[], Any] | None,
    root: str | os.PathLike,
    *,
    num_episodes: int,
    num_workers: int = 1,
    max_steps: int = 27_000,
    executor: str = "process",
    max_restarts: int = 3,
    events_fn: EventsFn | None = None,
    seed: int = 0,
    shard_rows: int | None = None,
    shard_bytes: int | None = None,
    ray_address: str | None = None,
    progress: bool = True,
    encodings: dict | None = None,
) -> GenerateStats:
    """Plays ``num_episodes`` episodes in parallel and writes them into the dataset at ``root``.

    Workers only play whole episodes; this process is the one writer and adds
    them in episode order (completions are buffered), so the dataset does not
    depend on ``num_workers`` or on timing. Episode ``i`` resets the env with
    seed ``seed + i``. A worker that dies is restarted up to ``max_restarts``
    times and its unfinished episode is played again. When ``root`` already
    holds a dataset, the episodes it has committed are kept and generation
    continues from the next one (resume), so ``num_episodes`` is the total.

    Each episode is a TED row block: ``observation``, ``action``,
    ``("next", "observation")`` (the final one is kept), ``("next", "reward")``
    float32 ``[T, 1]``, ``("next", "done"/"terminated"/"truncated")`` bool
    ``[T, 1]``; an episode cut at ``max_steps`` is truncated. Events:
    ``reward:+1``, ``reward:-1``, ``life_lost``, ``episode_end`` plus those of
    ``events_fn(info, prev_info) -> [(name, value)]``. Episode metadata:
    ``env_id``, ``seed``, ``episode_return``, ``worker`` (the length is the
    table's ``length``).

    Args:
        env_fn: picklable zero-argument callable returning a Gymnasium env
            (a module-level function or ``functools.partial``, e.g.
            ``partial(make_atari_env, "ALE/Pong-v5")``).
        policy_fn: picklable zero-argument callable returning an agent with
            ``act(observation, memory) -> (action, memory)`` or a callable
            ``observation -> action``; ``None`` plays uniformly random actions.
        root: dataset directory (created, or resumed when it holds a dataset).
        num_episodes: total episodes the dataset should hold.
        num_workers: parallel workers.
        max_steps: steps after which an episode is truncated.
        executor: ``"process"`` (local processes) or ``"ray"`` (Ray actors).
        max_restarts: restarts allowed per worker before giving up.
        events_fn: picklable ``(info, prev_info) -> [(name, value)]``.
        seed: base seed.
        shard_rows, shard_bytes: shard size for a new dataset (see ``ShardWriter.create``).
        ray_address: address of a running Ray cluster (``executor="ray"``).
        progress: show a progress bar over episodes (steps per second beside it).
        encodings: ``{key: encoding}`` for a new dataset, e.g.
            ``{"observation": "zstd"}`` or ``{"observation": "video"}`` (see
            :mod:`torchrl_ext.encodings`); a resumed dataset keeps its own.
            The workers encode these columns (chunk bytes cross to this
            process, not frames; see :mod:`torchrl_ext.generate.encode`),
            except a zstd column with a dictionary still to be trained,
            which this process encodes.

    Returns:
        :class:`GenerateStats` for this call.

    Raises:
        WorkerFailed: a worker failed more than ``max_restarts`` times.
    """
    positive_int(num_episodes, "num_episodes")
    positive_int(num_workers, "num_workers")
    positive_int(max_steps, "max_steps")
    nonnegative_int(max_restarts, "max_restarts")
    if not isinstance(seed, int):
        raise TypeError(f"`seed` must be an int, got {type(seed).__name__}")
    if executor not in EXECUTORS:
        raise ValueError(f"`executor` must be one of {EXECUTORS}, got {executor!r}")
    if not callable(env_fn):
        raise TypeError(f"`env_fn` must be a callable returning a Gymnasium env, got {type(env_fn).__name__}")
    for name, fn in (("env_fn", env_fn), ("policy_fn", policy_fn), ("events_fn", events_fn)):
        _check_picklable(name, fn)

    root = user_path(root, "root")
    source = {"kind": "generated", "seed": seed, "max_steps": max_steps}
    if (root / MANIFEST_NAME).exists():
        old = read_manifest(root).source or {}
        if old.get("kind") == "generated" and (old.get("seed"), old.get("max_steps")) != (seed, max_steps):
            raise ValueError(
                f"{root} was generated with seed={old.get('seed')}, max_steps={old.get('max_steps')}, "
                f"got seed={seed}, max_steps={max_steps}; pass the same values to resume or use a new root"
            )
        writer = ShardWriter.open(root)
    else:
        writer = ShardWriter.create(root, shard_rows=shard_rows, shard_bytes=shard_bytes, source=source,
                                    encodings=encodings)
    start = writer.num_episodes
    t0 = time.perf_counter()
    stats = GenerateStats(generated=0, skipped=min(start, num_episodes), steps=0, seconds=0.0, restarts=0)
    if start >= num_episodes:
        writer.close()
        logger.info("%s already holds %d episodes; nothing to generate", root, start)
        return stats
    if start:
        logger.info("%s: resuming after %d committed episodes", root, start)
    pool, failed = None, True
    try:
        pool = _make_executor(executor, env_fn, policy_fn, max_steps=max_steps, events_fn=events_fn,
                              num_workers=num_workers, max_restarts=max_restarts, ray_address=ray_address,
                              encoder=FrameEncoder(writer.encoded_columns()))
        _run(pool, writer, start, num_episodes, seed, num_workers, progress, stats, t0)
        failed = False
    finally:
        if pool is not None:
            stats.restarts = pool.restarts
            pool.close()
        writer.close(failed=failed)
        stats.seconds = time.perf_counter() - t0
    from ..events import EventIndex

    EventIndex.build(root)  # readers never build it; generation saves it once it is complete
    return stats


def _make_executor(executor: str, *args, ray_address: str | None, **kwargs):
    if executor == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(*args, address=ray_address, **kwargs)
    return ProcessExecutor(*args, **kwargs)


def _run(pool, writer: ShardWriter, start: int, total: int, seed: int, num_workers: int,
         progress: bool, stats: GenerateStats, t0: float) -> None:
    window = max(4, 2 * num_workers)  # episodes submitted ahead of the next one to write
    ready: dict[int, dict] = {}
    next_submit = next_write = start
    with ProgressBar("generate", total, unit="episode", initial=start, enabled=progress) as bar:
        while next_write < total:
            while next_submit < total and next_submit - next_write < window:
                pool.submit(next_submit, seed + next_submit)
                next_submit += 1
            for episode, result in pool.wait(timeout=1.0):
                if episode >= next_write:
                    ready.setdefault(episode, result)  # a late duplicate of a retried episode is dropped
            while next_write in ready:
                result = ready.pop(next_write)
                td, encoded = unpack_episode(result)
                writer.add_episode(td, metadata=result["metadata"], events=result["events"], encoded=encoded)
                if not stats.generated:
                    stats.first_episode_seconds = time.perf_counter() - t0
                stats.generated += 1
                stats.steps += len(td["next"]["reward"])
                stats.last_episode_seconds = time.perf_counter() - t0
                next_write += 1
                bar.update(1, steps_per_s=f"{stats.steps / max(time.perf_counter() - t0, 1e-9):.0f}")
