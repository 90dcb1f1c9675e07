"""Whole runs of the Atari DQN Replay Dataset: one run, or many at once on processes or Ray.

A run ``"<game>/<run>"`` converts into ``<root>/<game>/<run>``, read from a
local ``replay_logs`` directory, streamed from the bucket (default: nothing
lands on disk but the dataset), or downloaded first and kept
(``keep_download=True``, into ``<root>/.downloads/<game>/<run>/replay_logs``).

:func:`convert_atari_runs` runs one task per run in local processes
(``executor="process"``) or Ray tasks (``executor="ray"``: an existing
cluster at ``address``, or a private loopback one), each writing its own
directory under ``root``, which must be a path every worker sees (a shared
filesystem on a multi-machine cluster). Every task resumes what an earlier,
interrupted call left, and a finished run is not converted again, so calling
it again after a crash or a kill finishes the job. One bar shows runs
done; one bar per running run shows its frames read. With ``push_to=``
(``gs://bucket/prefix``) each task also pushes its run, once converted, to
``<push_to>/<game>/<run>/`` (:func:`torchrl_ext.remote.publish.push`: the
manifest last, objects already there skipped, so a new call resumes it too).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...progress import ProgressBar
from ...remote.publish import push
from ...remote.urls import parse_url
from ...sources.gcs import DEFAULT_DEADLINE
from ...validation import user_path
from .bucket import (
    ATARI_BUCKET,
    ATARI_PREFIX,
    download_atari_run,
    list_atari_checkpoints,
)
from .convert import convert_replay_logs
from .logs import BucketReplayLogs, LocalReplayLogs, ReplayLogs

__all__ = ["RUN_EXECUTORS", "convert_atari_run", "convert_atari_runs", "parse_run_id", "resolve_replay_dir"]

logger = logging.getLogger(__name__)

RUN_EXECUTORS = ("process", "ray")
_GAME = re.compile(r"[A-Za-z0-9_-]+")


def parse_run_id(dataset_id: Any) -> tuple[str, int]:
    """``"Pong/1"`` -> ``("Pong", 1)``.

    Example:
        >>> parse_run_id("Pong/5")
        ('Pong', 5)
    """
    game, _, run = str(dataset_id).partition("/")
    if not isinstance(dataset_id, str) or not _GAME.fullmatch(game) or not run.isdigit() or int(run) < 1:
        raise ValueError(f"a run id must look like 'Pong/1' ('<game>/<run>', run >= 1), got {dataset_id!r}")
    return game, int(run)


def resolve_replay_dir(local_dir: str | os.PathLike, game: str, run: int) -> Path:
    """Finds the replay logs of ``game``/``run`` under ``local_dir``.

    Accepts the bucket layout (``<local_dir>/<game>/<run>/replay_logs``), a run
    directory, or the ``replay_logs`` directory itself.
    """
    base = user_path(local_dir, "local_dir")
    for cand in (base / game / str(run) / "replay_logs", base / game / str(run), base):
        if cand.is_dir() and LocalReplayLogs(cand).checkpoints():
            return cand
    raise FileNotFoundError(
        f"{base}: no replay logs for {game}/{run}; expected {base}/{game}/{run}/replay_logs/"
        "$store$_observation_ckpt.<i>.gz or the files directly in it"
    )


def _download(game: str, run: int, root: Path, bucket: str, prefix: str, checkpoints: list[int] | None,
              progress: bool, deadline: float) -> ReplayLogs:
    dest = root / ".downloads" / game / str(run) / "replay_logs"
    wanted = None
    if checkpoints is not None:
        available = list_atari_checkpoints(game, run, bucket=bucket, prefix=prefix, deadline=deadline)
        wanted = set(checkpoints)
        if available and max(wanted) == available[-1] and len(available) > 1:
            wanted.add(available[-2])  # places a final log (see timeline)
        wanted = sorted(wanted)
    download_atari_run(game, run, dest, bucket=bucket, prefix=prefix, checkpoints=wanted, progress=progress,
                       deadline=deadline)
    return LocalReplayLogs(dest)


def convert_atari_run(
    dataset_id: str,
    root: str | os.PathLike,
    *,
    local_dir: str | os.PathLike | None = None,
    bucket: str | None = None,
    prefix: str | None = None,
    keep_download: bool = False,
    checkpoints: list[int] | None = None,
    stack_size: int = 4,
    encodings: dict[str, Any] | None = None,
    shard_bytes: int | None = None,
    force: bool = False,
    progress: Any = True,
    deadline: float = DEFAULT_DEADLINE,
    push_to: str | None = None,
) -> Path:
    """Converts one run into ``<root>/<game>/<run>`` (resumes, or returns at once if it is done).

    Args:
        dataset_id: ``"<game>/<run>"``, e.g. ``"Pong/1"``.
        root: directory holding converted runs.
        local_dir: read replay logs from here (see :func:`resolve_replay_dir`) instead of the bucket.
        bucket, prefix: the bucket and its top-level prefix (default: the public dataset).
        keep_download: download the ``.gz`` files into ``<root>/.downloads`` and keep them,
            instead of streaming them.
        checkpoints: convert only these checkpoint indices.
        stack_size, encodings, shard_bytes, progress: as in :func:`convert_replay_logs`.
        force: delete an existing conversion first.
        deadline: seconds a download or stream may go without data before it fails
            (resumable; see :func:`torchrl_ext.sources.download_prefix`).
        push_to: a URL (``gs://bucket/prefix``); the converted run is then pushed to
            ``<push_to>/<game>/<run>/``, its manifest last.

    Returns:
        The dataset directory.
    """
    game, run = parse_run_id(dataset_id)
    target = None if push_to is None else f"{parse_url(push_to, 'push_to').url}{game}/{run}/"
    root = user_path(root, "root")
    path = root / game / str(run)
    if force and path.exists():
        shutil.rmtree(path)
    bucket = ATARI_BUCKET if bucket is None else bucket
    prefix = ATARI_PREFIX if prefix is None else prefix
    if local_dir is not None:
        logs: ReplayLogs = LocalReplayLogs(resolve_replay_dir(local_dir, game, run))
    elif keep_download:
        logs = _download(game, run, root, bucket, prefix, checkpoints, progress is True, deadline)
    else:
        logs = BucketReplayLogs.for_run(game, run, bucket=bucket, prefix=prefix, deadline=deadline)
    out = convert_replay_logs(logs, path, checkpoints=checkpoints, stack_size=stack_size, game=game, run=run,
                              shard_bytes=shard_bytes, encodings=encodings, progress=progress)
    if target is not None:
        result = push(out, target, progress=False)
        logger.info("%s: pushed to %s (%d objects uploaded, %d bytes; %d already there)", dataset_id, result.url,
                    result.uploaded, result.bytes_uploaded, result.skipped)
    return out


class _QueueProgress:
    """Picklable progress callback: ``(run id, done, total)`` onto a queue read by the caller."""

    def __init__(self, queue: Any, dataset_id: str) -> None:
        self.queue, self.dataset_id = queue, dataset_id

    def __call__(self, done: int, total: int) -> None:
        self.queue.put((self.dataset_id, done, total))


class _Bars:
    """One bar of runs done, one bar of frames read per running run."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.enabled = enabled
        self.overall = ProgressBar("convert runs", total, unit="run", enabled=enabled)
        self.runs: dict[str, ProgressBar] = {}

    def update(self, dataset_id: str, done: int, total: int) -> None:
        bar = self.runs.get(dataset_id)
        if bar is None:
            bar = self.runs[dataset_id] = ProgressBar(f"convert {dataset_id}", total, unit="frame", initial=done,
                                                      enabled=self.enabled, leave=False)
        bar.moveto(done, total)
        logger.debug("%s: %d of %d frames", dataset_id, done, total)

    def finished(self, dataset_id: str, completed: bool = True) -> None:
        bar = self.runs.pop(dataset_id, None)
        if bar is not None:
            bar.close(completed=completed)
        self.overall.update(1)

    def close(self, completed: bool = True) -> None:
        for bar in self.runs.values():
            bar.close(completed=False)
        self.overall.close(completed=completed)


def _drain(queue: Any, bars: _Bars) -> None:
    import queue as queue_module  # ray.util.queue raises the standard library's Empty too

    while True:
        try:
            item = queue.get_nowait()
        except queue_module.Empty:
            return
        bars.update(*item)


def convert_atari_runs(
    dataset_ids: Sequence[str],
    root: str | os.PathLike,
    *,
    executor: str = "process",
    num_workers: int | None = None,
    address: str | None = None,
    mp_start_method: str = "spawn",
    progress: bool = True,
    **run_kwargs: Any,
) -> list[Path]:
    """Converts many runs, one task each; safe to call again after an interruption.

    Args:
        dataset_ids: runs, e.g. ``["Pong/1", "Pong/2", "Breakout/1"]``.
        root: directory holding converted runs (``<root>/<game>/<run>``); with Ray on
            several machines, a path on a filesystem every node mounts.
        executor: ``"process"`` (local processes) or ``"ray"``.
        num_workers: runs converted at once (default: CPUs, at most the number of runs);
            with ``executor="ray"`` and no ``address``, the private cluster's CPUs.
        address: Ray cluster address (``ray.init(address=...)``, e.g. ``"auto"``);
            ``None`` starts a private local cluster unless Ray is already initialised.
        mp_start_method: start method of the local processes.
        progress: show progress bars (runs, and frames of each running run).
        **run_kwargs: passed to :func:`convert_atari_run` (``local_dir``, ``bucket``,
            ``prefix``, ``keep_download``, ``checkpoints``, ``encodings``, ``push_to``...).

    Returns:
        The dataset directories, in the order of ``dataset_ids``.

    Raises:
        RuntimeError: some runs failed (the message lists them; the others are done,
            and calling again retries the failed ones where they stopped).
    """
    ids = list(dataset_ids)
    for dataset_id in ids:
        parse_run_id(dataset_id)
    if len(set(ids)) != len(ids):
        raise ValueError(f"`dataset_ids` must not repeat a run, got {ids!r}")
    if not ids:
        raise ValueError("`dataset_ids` is empty; expected runs like ['Pong/1']")
    if executor not in RUN_EXECUTORS:
        raise ValueError(f"`executor` must be one of {RUN_EXECUTORS}, got {executor!r}")
    if num_workers is not None and (isinstance(num_workers, bool) or not isinstance(num_workers, int)
                                    or num_workers < 1):
        raise ValueError(f"`num_workers` must be a positive int, got {num_workers!r}")
    workers = num_workers or max(1, min(len(ids), os.cpu_count() or 1))
    bad = sorted(set(run_kwargs) - {"local_dir", "bucket", "prefix", "keep_download", "checkpoints",
                                    "stack_size", "encodings", "shard_bytes", "force",
                                    "deadline", "push_to"})
    if bad:
        raise TypeError(f"convert_atari_runs got unexpected keyword arguments {bad}; see convert_atari_run")
    if run_kwargs.get("push_to") is not None:
        parse_url(run_kwargs["push_to"], "push_to")  # a bad URL fails here, not in every task
    root = user_path(root, "root")
    root.mkdir(parents=True, exist_ok=True)
    run = _run_ray if executor == "ray" else _run_processes
    bars, completed = _Bars(len(ids), progress), False
    try:
        results, errors = run(ids, root, workers, address, mp_start_method, run_kwargs, bars)
        completed = True
    finally:
        bars.close(completed)
    if errors:
        first = next(iter(errors.values()))
        raise RuntimeError(
            f"{len(errors)} of {len(ids)} runs failed: "
            + "; ".join(f"{k}: {type(e).__name__}: {e}" for k, e in errors.items())
            + "; call convert_atari_runs again to resume them"
        ) from first
    return [results[i] for i in ids]


def _run_processes(ids, root, workers, address, mp_start_method, run_kwargs, bars):
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    if address is not None:
        raise ValueError("`address` is for executor='ray'; leave it out with executor='process'")
    ctx = multiprocessing.get_context(mp_start_method)
    results, errors = {}, {}
    with ctx.Manager() as manager, ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        queue = manager.Queue()
        futures = {pool.submit(convert_atari_run, i, root, progress=_QueueProgress(queue, i), **run_kwargs): i
                   for i in ids}
        try:
            while futures:
                done, _ = wait(futures, timeout=0.2, return_when=FIRST_COMPLETED)
                _drain(queue, bars)
                for fut in done:
                    i = futures.pop(fut)
                    try:
                        results[i] = fut.result()
                    except Exception as err:  # noqa: BLE001 - every run's failure is reported at the end
                        errors[i] = err
                        logger.error("%s failed: %s", i, err)
                    bars.finished(i, i in results)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    return results, errors


class _Ray:
    """Ray for the run tasks: the cluster at ``address``, the one already initialised, or a private one.

    The private cluster listens on loopback only (``torchrl_ext.compat.ray_cluster``),
    keeps its files in a short temporary directory and gives tasks this process's
    ``sys.path``; :meth:`close` shuts down only what was started here.
    """

    def __init__(self, num_cpus: int, address: str | None) -> None:
        from ...compat.ray_cluster import loopback_only, restore
        from ...generate.ray_executor import import_ray

        ray = self.ray = import_ray()
        self._restore, self._saved, self._temp, self._owns = restore, None, None, False
        if ray.is_initialized():
            return
        if address is not None:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            import sys
            import tempfile

            self._saved = loopback_only()
            self._temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
            paths = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
            try:
                ray.init(num_cpus=num_cpus, include_dashboard=False, _temp_dir=self._temp, log_to_driver=False,
                         logging_level=logging.WARNING, runtime_env={"env_vars": {"PYTHONPATH": paths}})
            except BaseException:
                self.close()
                raise
        self._owns = True

    def close(self) -> None:
        if self._owns:
            self.ray.shutdown()
            self._owns = False
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
            self._temp = None
        if self._saved is not None:
            self._restore(self._saved)
            self._saved = None


def _run_ray(ids, root, workers, address, mp_start_method, run_kwargs, bars):
    cluster = _Ray(workers, address)
    ray = cluster.ray
    try:
        from ray.util.queue import Queue

        queue = Queue()
        task = ray.remote(num_cpus=1, max_retries=2)(convert_atari_run)
        refs = {task.remote(i, str(root), progress=_QueueProgress(queue, i), **run_kwargs): i for i in ids}
        results, errors = {}, {}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.2)
            _drain(queue, bars)
            for ref in ready:
                i = refs.pop(ref)
                try:
                    results[i] = Path(ray.get(ref))
                except Exception as err:  # noqa: BLE001 - RayTaskError wraps the run's error; reported at the end
                    errors[i] = err
                    logger.error("%s failed: %s", i, err)
                bars.finished(i, i in results)
        _drain(queue, bars)
        return results, errors
    finally:
        cluster.close()
