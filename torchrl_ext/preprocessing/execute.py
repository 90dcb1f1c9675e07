"""Running a ``preprocess`` run's shard tasks: in this process, on threads, on worker processes, or on Ray.

Each task is :func:`~torchrl_ext.preprocessing.shard.run_task`, which itself
skips a shard finished by an earlier, interrupted run (that is how a run
resumes). Worker processes exit with their parent (``parent_watch``); a ``fn``
that plain pickle refuses (a lambda, a local function) travels by cloudpickle.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
from collections.abc import Callable
from concurrent.futures import (
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    as_completed,
)
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import torch

from ..parent_watch import exit_with_parent
from ..progress import ProgressBar
from .shard import ShardTask, run_task

__all__ = ["EXECUTORS", "run_tasks"]

EXECUTORS = ("process", "thread", "serial", "ray")


class _Cloudpickled:
    """Carries a function that plain pickle refuses (lambda, local function) to workers."""

    def __init__(self, fn: Callable) -> None:
        import cloudpickle

        self._blob = cloudpickle.dumps(fn)
        self._fn = fn

    def __getstate__(self) -> bytes:
        return self._blob

    def __setstate__(self, blob: bytes) -> None:
        self._blob = blob
        # Not a downloaded file: the bytes this process's parent cloudpickled from the caller's own fn
        # (preprocess's worker handshake); no path or URL reaches this unpickler.
        self._fn = pickle.loads(blob)  # trusted: our parent process's own cloudpickle of the caller's fn

    def __call__(self, td: Any) -> Any:
        return self._fn(td)


def _init_worker(threads: int) -> None:
    exit_with_parent()
    torch.set_num_threads(threads)


def run_tasks(tasks: list[ShardTask], executor: str, num_workers: int | None, start_method: str | None,
              threads: int, pbar: bool, total: int) -> list[dict]:
    """Runs every task (or verifies and keeps its earlier output); returns their records in task order.

    Args:
        tasks: the run's tasks; with the ``"process"`` executor a ``fn`` that
            plain pickle refuses is replaced by a cloudpickled wrapper in place.
        executor: one of :data:`EXECUTORS`.
        num_workers: parallel workers (default: number of CPUs, at most one per task); ``0`` runs serially.
        start_method: start method of worker processes (default ``"fork"`` where available).
        threads: torch threads per worker process.
        pbar: show a progress bar of ``total`` rows.
        total: rows over all tasks.

    Raises:
        RuntimeError: a worker process died; the finished shards are kept for a resumed run.
    """
    workers = min(num_workers if num_workers is not None else (os.cpu_count() or 1), len(tasks))
    records: list[dict | None] = [None] * len(tasks)
    bar = ProgressBar("preprocess", total, unit="row", enabled=pbar)
    if executor == "serial" or workers == 0:
        with bar:
            for i, t in enumerate(tasks):
                records[i] = run_task(t)
                bar.update(t.stop - t.start)
        return records
    if executor == "ray":
        from .ray_tasks import run_on_ray

        with bar:
            return run_on_ray(tasks, num_workers, bar)
    if executor == "process":
        try:
            pickle.dumps(tasks[0].fn)
        except Exception:  # noqa: BLE001 - any pickling failure: fall back to cloudpickle
            wrapped = _Cloudpickled(tasks[0].fn)
            for t in tasks:
                t.fn = wrapped
        if start_method is None:  # fork: fast start, and fn need not be importable by path
            start_method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
        ctx = multiprocessing.get_context(start_method)
        pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(threads,))
    else:
        pool = ThreadPoolExecutor(workers)
    with pool:
        futures: dict[Future, int] = {pool.submit(run_task, t): i for i, t in enumerate(tasks)}
        completed = False
        try:
            for fut in as_completed(futures):
                i = futures[fut]
                records[i] = fut.result()
                bar.update(tasks[i].stop - tasks[i].start)
            completed = True
        except BrokenProcessPool as err:
            done = sum(r is not None for r in records)
            raise RuntimeError(
                f"a preprocess worker died ({done} of {len(tasks)} shards finished and kept); "
                "call preprocess again with the same arguments to resume"
            ) from err
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        finally:
            bar.close(completed=completed)
    return records
