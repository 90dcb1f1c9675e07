"""``preprocess``: map a function over a sharded dataset into a new one, shard-parallel, resumable.

Layout of ``dest`` while a run is under way (no manifest yet, so no reader opens it)::

    <dest>/.preprocess/plan.json          source fingerprint, row limit, output schema
    <dest>/.preprocess/shard-<id>.json    record of each finished output shard
    <dest>/shards/<id>/                   finished output shards (one per source shard)

When every shard is finished the episode table and event logs are copied, the
manifest is written atomically (the commit point) and ``.preprocess/`` removed.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import pickle
import shutil
import zlib
from concurrent.futures import (
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    as_completed,
)
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ..format import (
    DICT_DIR,
    EPISODES_NAME,
    INCOMPLETE_NAME,
    MANIFEST_NAME,
    Column,
    Key,
    Manifest,
    ShardInfo,
    atomic_write_bytes,
    atomic_write_json,
    dictionary_name,
    filter_event_log,
    fsync_dir,
    read_dictionary,
    read_manifest,
    write_dictionary,
    write_manifest,
)
from ..parent_watch import exit_with_parent
from ..storages import ShardedStorage
from ..validation import nonnegative_int, positive_int
from ..writer import LOCK_NAME, EpisodeTable, lock_dataset, unlock_dataset
from .schema import (
    apply_encodings,
    flatten_output,
    infer_schema,
    next_candidates,
    rows_equal,
)
from .shard import WORK_DIR, ShardTask, run_task

__all__ = ["preprocess"]

logger = logging.getLogger(__name__)

EXECUTORS = ("process", "thread", "serial")
DEFAULT_BATCH_BYTES = 8 << 20
PROBE_ROWS = 256
_OURS = {MANIFEST_NAME, WORK_DIR, "shards", "events", EPISODES_NAME, LOCK_NAME, INCOMPLETE_NAME, DICT_DIR}
_RESUME_HINT = ("an unfinished preprocess() run, not a dataset yet; call preprocess() again with the "
                "same arguments to resume it")


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
        # Not a downloaded file: the bytes this process's parent cloudpickled from the caller's own fn.
        self._fn = pickle.loads(blob)

    def __call__(self, td: Any) -> Any:
        return self._fn(td)


def _init_worker(threads: int) -> None:
    exit_with_parent()
    torch.set_num_threads(threads)


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

    Args:
        source: dataset directory or a :class:`ShardedStorage`.
        fn: TensorDict ``[n]`` -> TensorDict ``[n]``.
        dest: new dataset directory (must not be inside ``source``).
        num_workers: parallel workers (default: number of CPUs); ``0`` runs in this process.
        batch_rows: rows per ``fn`` call (default: about 8 MiB of source rows).
        executor: ``"process"``, ``"thread"`` or ``"serial"``.
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
        A :class:`ShardedStorage` over ``dest``.
    """
    if where is not None:
        from ..export import export_episodes
        from ..storages import EpisodeView

        return export_episodes(EpisodeView(source, where, params), dest, fn=fn, encodings=encodings,
                               progress=pbar)
    if executor not in EXECUTORS:
        raise ValueError(f"`executor` must be one of {EXECUTORS}, got {executor!r}")
    if next_from_row not in (True, False, "auto"):
        raise ValueError(f"`next_from_row` must be True, False or 'auto', got {next_from_row!r}")
    nonnegative_int(num_workers, "num_workers", allow_none=True)
    positive_int(batch_rows, "batch_rows", allow_none=True)
    if not callable(fn):
        raise TypeError(f"`fn` must be callable, got {type(fn).__name__}")
    root = Path(source.root if isinstance(source, ShardedStorage) else source).resolve()
    dest = Path(dest).resolve()
    if dest == root or root in dest.parents:
        raise ValueError(f"`dest` {dest} is inside the source {root}; choose another directory")
    src = ShardedStorage(root, cache_bytes=0)
    m = src.manifest
    first, length, has_final = _episode_bounds(root, m)
    ends = first + length - 1
    limit, num_eps = _row_limit(ends, m.num_rows, num_rows)
    if batch_rows is None:
        row_bytes = sum(c.row_bytes for c in m.schema) + sum(m.column(k).row_bytes for k in m.next_from_row)
        batch_rows = max(1, DEFAULT_BATCH_BYTES // max(row_bytes, 1))
    schema, next_keys = _probe(src, fn, min(batch_rows, limit, PROBE_ROWS), ends, next_from_row)
    schema = apply_encodings(schema, m.schema, encodings)
    schema, dictionaries = _dictionaries(src, fn, min(batch_rows, limit, PROBE_ROWS), schema, root, dest)
    del src
    workers = num_workers if num_workers is not None else (os.cpu_count() or 1)
    # Pieces small enough to keep every worker busy; a big source shard becomes several output shards.
    max_task_rows = max(batch_rows, -(-limit // (4 * max(workers, 1))))
    tasks = _tasks(root, dest, m, limit, ends, has_final, schema, next_keys, batch_rows, fn, max_task_rows)
    plan = {
        "source": {"num_rows": m.num_rows, "num_episodes": m.num_episodes,
                   "shards": [[s.rows, s.checksum] for s in m.shards]},
        "limit": limit,
        "schema": [c.to_json() for c in tasks[0].stored_schema],
        "next_from_row": [list(k) for k in next_keys],
    }
    dest.mkdir(parents=True, exist_ok=True)
    lock = lock_dataset(dest, "another writer or preprocess run holds this directory")
    try:
        if _prepare_dest(dest, plan, overwrite):
            logger.info("%s: complete and matching the source, reused", dest)
            return ShardedStorage(dest)
        for key, data in dictionaries.items():
            write_dictionary(dest, key, data)
        records = _run(tasks, executor, num_workers, mp_start_method, worker_threads, pbar, limit)
        _finish(root, dest, m, tasks, records, limit, num_eps, next_keys, fn)
    finally:
        unlock_dataset(dest, lock)
    return ShardedStorage(dest)


def _episode_bounds(root: Path, m: Manifest) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    table = EpisodeTable.open(root / m.episodes)
    try:
        return table.bounds(m.num_episodes)
    finally:
        table.close()


def _row_limit(ends: np.ndarray, total: int, num_rows: int | None) -> tuple[int, int]:
    if total == 0:
        raise ValueError("the source dataset has no rows; write episodes into it first")
    if num_rows is None:
        return total, len(ends)
    if not isinstance(num_rows, int) or num_rows <= 0:
        raise ValueError(f"`num_rows` must be a positive int or None, got {num_rows!r}")
    k = int(np.searchsorted(ends + 1, min(num_rows, total), side="right"))
    if k == 0:
        raise ValueError(
            f"`num_rows`={num_rows} is shorter than the first episode ({int(ends[0]) + 1} rows); "
            "only whole episodes are preprocessed, pass at least that many rows"
        )
    return int(ends[k - 1]) + 1, k


def _probe(src: ShardedStorage, fn: Callable, n: int, ends: np.ndarray,
           mode: bool | str) -> tuple[list[Column], list[Key]]:
    """Runs ``fn`` on the first batch: output schema and the keys whose next value is stored once."""
    where = f"rows [0, {n}) (first batch)"
    flat = flatten_output(fn(src.get(slice(0, n))), n, where)
    schema = infer_schema(flat)
    candidates = next_candidates(schema) if mode is not False else []
    is_last = np.isin(np.arange(n), ends)
    keys = []
    for k in candidates:
        ok = rows_equal(flat[("next", *k)][:-1], flat[k][1:]) | is_last[:-1]
        if ok.all():
            keys.append(k)
        elif mode is True:
            bad = int(np.flatnonzero(~ok)[0])
            raise ValueError(
                f"next_from_row=True but `fn` output {('next', *k)!r} at row {bad} differs from "
                f"{k!r} at row {bad + 1} of the same episode; pass next_from_row='auto' or False"
            )
        else:
            logger.info("storing %r as a column: it is not the next row's %r", ("next", *k), k)
    return schema, keys


def _dictionaries(src: ShardedStorage, fn: Callable, n: int, schema: list[Column], root: Path,
                  dest: Path) -> tuple[list[Column], dict[Key, bytes]]:
    """Dictionaries of the output's zstd columns: the source's when inherited, else trained on the first batch.

    A run resumed over an interrupted one reuses the dictionary it trained, so the plan still matches.
    """
    where = str(root / MANIFEST_NAME)
    out, data = [], {}
    flat = None
    for col in schema:
        opts = col.options_dict
        if "dictionary_file" in opts:
            data[col.key] = read_dictionary(root, opts, where)
        elif col.encoding == "zstd" and opts.get("dictionary"):
            earlier = dest / dictionary_name(col.key)
            if (dest / WORK_DIR / "plan.json").exists() and earlier.is_file():
                data[col.key] = earlier.read_bytes()
            else:
                from ..encodings import train_dictionary

                if flat is None:
                    flat = flatten_output(fn(src.get(slice(0, n))), n, "rows [0, n) (dictionary sample)")
                data[col.key] = train_dictionary(flat[col.key])
            col = col.with_encoding(col.encoding, {
                **opts, "dictionary_file": dictionary_name(col.key),
                "dictionary_crc": f"crc32:{zlib.crc32(data[col.key]):08x}"})
        out.append(col)
    return out, data


def _tasks(root, dest, m, limit, ends, has_final, schema, next_keys, batch_rows, fn,
           max_task_rows) -> list[ShardTask]:
    """One task per source shard, split into equal pieces of at most ``max_task_rows`` rows."""
    tasks, offset = [], 0
    for s in m.shards:
        rows = max(0, min(offset + s.rows, limit) - offset)
        pieces = -(-rows // max_task_rows)
        cuts = [offset + (rows * i) // max(pieces, 1) for i in range(pieces + 1)]
        for start, stop in zip(cuts[:-1], cuts[1:]):
            a, b = np.searchsorted(ends, [start, stop])
            tasks.append(ShardTask(
                source=str(root), dest=str(dest), shard_id=len(tasks), start=start, stop=stop,
                num_rows=limit, ends=ends[a:b].copy(), end_episodes=np.arange(a, b),
                end_has_final=has_final[a:b].copy(), schema=schema, next_keys=next_keys,
                batch_rows=batch_rows, fn=fn))
        offset += s.rows
    return tasks




def _clear(dest: Path) -> None:
    (dest / MANIFEST_NAME).unlink(missing_ok=True)  # first: dest stops being a dataset at once
    fsync_dir(dest)
    for name in _OURS - {LOCK_NAME, MANIFEST_NAME}:
        p = dest / name
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)


def _prepare_dest(dest: Path, plan: dict, overwrite: bool) -> bool:
    """Returns True when ``dest`` already holds the complete result; else readies it for work."""
    work = dest / WORK_DIR
    foreign = sorted(p.name for p in dest.iterdir() if p.name not in _OURS)
    if foreign:
        raise ValueError(
            f"`dest` {dest} holds files that are not a dataset ({foreign[:3]}); choose an empty "
            "or new directory"
        )
    if overwrite:
        _clear(dest)
    elif (dest / MANIFEST_NAME).exists():
        found = read_manifest(dest)
        same = (found.num_rows == plan["limit"]
                and [c.to_json() for c in found.schema] == plan["schema"]
                and [list(k) for k in found.next_from_row] == plan["next_from_row"])
        if not same:
            raise ValueError(
                f"`dest` {dest} holds a dataset of {found.num_rows} rows with another schema or "
                f"size than this run ({plan['limit']} rows); pass overwrite=True to replace it"
            )
        shutil.rmtree(work, ignore_errors=True)
        return True
    elif (work / "plan.json").exists():
        old = json.loads((work / "plan.json").read_text(encoding="utf-8"))
        if old != plan:
            raise ValueError(
                f"`dest` {dest} holds an interrupted run over another source, row limit or output "
                "schema; pass overwrite=True to discard it"
            )
        logger.info("%s: resuming an interrupted run", dest)
    work.mkdir(exist_ok=True)
    (dest / "shards").mkdir(exist_ok=True)
    atomic_write_bytes(dest / INCOMPLETE_NAME, _RESUME_HINT.encode("utf-8"))
    atomic_write_json(work / "plan.json", plan)
    fsync_dir(dest)
    return False


def _run(tasks: list[ShardTask], executor: str, num_workers: int | None, start_method: str | None,
         threads: int, pbar: bool, total: int) -> list[dict]:
    workers = min(num_workers if num_workers is not None else (os.cpu_count() or 1), len(tasks))
    records: list[dict | None] = [None] * len(tasks)
    bar = tqdm(total=total, unit="row", unit_scale=True, desc="preprocess", disable=not pbar)
    if executor == "serial" or workers == 0:
        for i, t in enumerate(tasks):
            records[i] = run_task(t)
            bar.update(t.stop - t.start)
        bar.close()
        return records
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
        try:
            for fut in as_completed(futures):
                i = futures[fut]
                records[i] = fut.result()
                bar.update(tasks[i].stop - tasks[i].start)
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
            bar.close()
    return records


def _finish(root: Path, dest: Path, m: Manifest, tasks: list[ShardTask], records: list[dict],
            limit: int, num_eps: int, next_keys: list[Key], fn: Callable) -> None:
    """Copies the episode table and event logs, then commits the manifest."""
    tmp = dest / WORK_DIR / EPISODES_NAME
    table = EpisodeTable.open(root / m.episodes)
    try:
        table.copy_to(tmp, num_eps, has_final=[e for r in records for e in r["final_episodes"]])
    finally:
        table.close()
    os.replace(tmp, dest / EPISODES_NAME)
    (dest / "events").mkdir(exist_ok=True)
    logs, crcs = [], []
    for rel in m.event_logs:
        crc = filter_event_log(root / rel, dest / rel, limit)
        if crc is not None:
            logs.append(rel)
            crcs.append(crc)
    fsync_dir(dest / "events")
    copied = EpisodeTable.open(dest / EPISODES_NAME)
    try:
        episodes_crc = copied.content_crc(num_eps)
    finally:
        copied.close()
    manifest = Manifest(
        schema=tasks[0].stored_schema,
        next_from_row=list(next_keys),
        shards=[ShardInfo(**r["shard"]) for r in records],
        num_rows=limit,
        num_episodes=num_eps,
        event_logs=logs,
        event_log_crcs=crcs,
        episodes_crc=episodes_crc,
        next_shard_id=len(tasks),
        shard_rows=m.shard_rows,
        source={"kind": "preprocess", "source": str(root),
                "fn": getattr(fn, "__qualname__", type(fn).__qualname__), "parent": m.source},
    )
    write_manifest(dest, manifest)
    listed = {Path(t.name) for t in tasks}
    for d in (dest / "shards").iterdir():  # pieces of an earlier, differently split run
        if Path(d.name) not in listed:
            shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(dest / WORK_DIR, ignore_errors=True)
    (dest / INCOMPLETE_NAME).unlink(missing_ok=True)
