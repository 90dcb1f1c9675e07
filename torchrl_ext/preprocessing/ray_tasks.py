"""``preprocess(..., executor="ray")``: the shard tasks as Ray tasks.

Each task is :func:`~torchrl_ext.preprocessing.shard.run_task`, as with the
other executors: it reads its source rows, writes its output shard (or keeps
one an interrupted run finished) and returns the shard's record; the driver
commits the manifest from the records. A source given as a URL travels as
the URL, so a task on another node opens it through that node's cache.
Ray retries a task whose worker died (``max_retries``); a task that raises
fails the run with the task's own error.

The cluster is the one this process is connected to (``ray.init`` called
before), else a private loopback-only cluster of ``num_workers`` CPUs started
here and shut down afterwards.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from typing import Any

from ..compat.ray_cluster import loopback_only, restore
from ..progress import ProgressBar
from .shard import ShardTask, run_task

__all__ = ["run_on_ray"]

logger = logging.getLogger(__name__)


def _import_ray() -> Any:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError as err:
        raise ImportError("executor='ray' needs Ray; pip install torchrl-ext[ray]") from err
    return ray


def run_on_ray(tasks: list[ShardTask], num_workers: int | None, bar: ProgressBar) -> list[dict]:
    """Runs every task on Ray; returns their records in task order.

    Raises:
        RuntimeError: a task failed; finished shards are kept for a resumed run.
    """
    ray = _import_ray()
    started, saved, temp = False, None, None
    if not ray.is_initialized():
        saved = loopback_only()
        temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
        paths = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
        ray.init(num_cpus=num_workers or os.cpu_count() or 1, include_dashboard=False, _temp_dir=temp,
                 log_to_driver=False, logging_level=logging.WARNING, runtime_env={"env_vars": {"PYTHONPATH": paths}})
        started = True
    try:
        task_fn = ray.remote(num_cpus=1, max_retries=2)(run_task)
        refs = {task_fn.remote(t): i for i, t in enumerate(tasks)}
        records: list[dict | None] = [None] * len(tasks)
        try:
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1)
                for ref in ready:
                    i = refs.pop(ref)
                    try:
                        records[i] = ray.get(ref)
                    except ray.exceptions.RayTaskError as err:
                        done = sum(r is not None for r in records)
                        cause = err.cause if getattr(err, "cause", None) is not None else err
                        raise RuntimeError(
                            f"preprocess task of shard {tasks[i].name} failed on Ray ({type(cause).__name__}: "
                            f"{cause}); {done} of {len(tasks)} shards finished and kept: fix the cause and call "
                            "preprocess again with the same arguments to resume"
                        ) from None
                    bar.update(tasks[i].stop - tasks[i].start)
        finally:
            for ref in refs:
                ray.cancel(ref, force=True)
        return records  # type: ignore[return-value]
    finally:
        if started:
            ray.shutdown()
            restore(saved)
            shutil.rmtree(temp, ignore_errors=True)
