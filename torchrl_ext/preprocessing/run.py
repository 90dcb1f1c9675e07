"""``preprocess``: map a function over a sharded dataset into a new one, shard-parallel, resumable.

A run has three steps, each in its own module: :mod:`.plan` checks the
arguments and fixes the output (row limit, schema, tasks) from the source
alone; :mod:`.execute` runs the per-shard tasks (:mod:`.shard`) on processes,
threads or in this process, keeping shards an interrupted run finished; and
:mod:`.destination` readies ``dest`` before them and commits it after (episode
table, event logs, then the manifest). The layout of an unfinished ``dest`` is
specified in :mod:`.destination`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from ..remote.urls import is_remote
from ..storages import ShardedStorage
from ..writer import lock_dataset, unlock_dataset
from .destination import finish_dest, prepare_dest, publish, staging_dest
from .execute import EXECUTORS, run_tasks  # noqa: F401 - EXECUTORS was defined here; still importable
from .plan import DEFAULT_BATCH_BYTES, PROBE_ROWS, RunPlan, check_arguments  # noqa: F401 - likewise

__all__ = ["preprocess"]

logger = logging.getLogger(__name__)


def preprocess(
    source: str | os.PathLike | ShardedStorage,
    fn: Callable[[Any], Any],
    dest: str | os.PathLike,
    *,
    num_workers: int | None = None,
    batch_rows: int | None = None,
    executor: str = "process",
    overwrite: bool = False,
    next_from_row: bool | str = "auto",
    num_rows: int | None = None,
    mp_start_method: str | None = None,
    worker_threads: int = 1,
    pbar: bool = True,
    encodings: dict | None = None,
    where: str | None = None,
    params: tuple = (),
) -> ShardedStorage:
    """Applies ``fn`` to every row of ``source`` and writes the result as a new dataset at ``dest``.

    ``fn`` receives a TensorDict batch of consecutive rows exactly as
    ``ShardedStorage.get`` returns them (with ``("next", "observation")``) and
    returns a TensorDict with the same number of rows. It must be row-wise: a
    row's output may depend on that row and on other rows it reads itself
    (e.g. from the source storage), never on which batch it arrived in. Keys,
    dtypes and shapes come from the first batch and are enforced afterwards.
    Output rows stay aligned with source rows, so the episode table (with
    metadata) and the event logs carry over; ``episode`` and ``step`` are
    copied from the source.

    One output shard is written per source shard (a large source shard is
    split into a few output shards so that every worker has work), by
    ``num_workers`` workers, each streaming ``batch_rows`` rows at a time. An interrupted run resumes:
    finished shards are checked (sizes, checksum) and kept. ``dest`` gets its
    manifest only when complete, so a partial ``dest`` never opens.

    Either side may be a bucket: a ``source`` URL is read through the local
    cache (shards fetched on first touch), and a ``dest`` URL is written into a
    local staging directory, then pushed with its ``dataset.json`` last and
    the staging directory removed (see :mod:`.destination`).

    Args:
        source: dataset directory, URL (``gs://bucket/prefix``) or :class:`ShardedStorage`.
        fn: TensorDict ``[n]`` -> TensorDict ``[n]``.
        dest: new dataset directory (must not be inside ``source``), or a URL to push it to.
        num_workers: parallel workers (default: number of CPUs); ``0`` runs in this process.
        batch_rows: rows per ``fn`` call (default: about 8 MiB of source rows).
        executor: ``"process"``, ``"thread"``, ``"serial"`` or ``"ray"`` (a Ray task per
            output shard, on the cluster this process is connected to, else on a private local one).
        overwrite: discard whatever preprocessing output is at ``dest``.
        next_from_row: ``"auto"`` stores ``("next", K)`` once when the first batch
            shows it equals the next row's ``K`` (then enforced on every row);
            ``False`` stores it as a plain column; ``True`` requires storing it once.
        num_rows: only the first ``num_rows`` rows, rounded down to whole episodes.
        mp_start_method: start method of worker processes (default ``"fork"`` where available).
        worker_threads: torch threads per worker.
        pbar: show a progress bar.
        encodings: ``{key: encoding}`` of output columns (see
            :mod:`torchrl_ext.encodings`); by default an output column keeps the
            source column's encoding when it has the same key, dtype and shape,
            and is raw otherwise.
        where, params: process only the episodes matching this SQL filter over the
            episode table (e.g. ``"game = ? AND score > 10"``). The result is a new
            dataset of those episodes alone, renumbered from 0, with their metadata
            and events; it is written episode by episode in this process
            (:func:`torchrl_ext.export.export_episodes`).

    Returns:
        A :class:`ShardedStorage` over ``dest`` (for a URL, read through the cache).
    """
    url = None
    if is_remote(dest):
        url, dest = staging_dest(dest, source)
    if where is not None:
        from ..export import export_episodes
        from ..storages import EpisodeView

        out = export_episodes(EpisodeView(source, where, params), dest, fn=fn, encodings=encodings,
                              progress=pbar, operation="preprocess")
        return out if url is None else publish(out.root, url, progress=pbar)
    check_arguments(fn, executor, next_from_row, num_workers, batch_rows)
    plan = RunPlan.from_source(source, fn, dest, num_workers=num_workers, batch_rows=batch_rows,
                               next_from_row=next_from_row, num_rows=num_rows, encodings=encodings)
    plan.dest.mkdir(parents=True, exist_ok=True)
    lock = lock_dataset(plan.dest, "another writer or preprocess run holds this directory")
    try:
        if prepare_dest(plan, overwrite):
            logger.info("%s: complete and matching the source, reused", plan.dest)
        else:
            records = run_tasks(plan.tasks, executor, num_workers, mp_start_method, worker_threads, pbar,
                                plan.limit)
            finish_dest(plan, records)
    finally:
        unlock_dataset(plan.dest, lock)
    return ShardedStorage(plan.dest) if url is None else publish(plan.dest, url, progress=pbar)
