"""Planning a ``preprocess`` run before anything is written: arguments, row limit, output schema, tasks.

The plan reads the source only: its manifest and episode table, and ``fn``'s
output on the first batch (which fixes the output columns, the keys whose
``("next", K)`` is stored once, and the zstd dictionaries). It then cuts the
source rows into :class:`~torchrl_ext.preprocessing.shard.ShardTask` pieces.
A resumed run must arrive at the same plan (:meth:`RunPlan.to_json`).
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from ..format import (
    MANIFEST_NAME,
    Column,
    Key,
    Manifest,
    dictionary_name,
    read_dictionary,
    read_inside,
)
from ..remote.roots import dataset_root
from ..storages import ShardedStorage
from ..validation import nonnegative_int, positive_int, user_path
from ..writer import EpisodeTable
from .execute import EXECUTORS
from .schema import (
    apply_encodings,
    flatten_output,
    infer_schema,
    next_candidates,
    rows_equal,
)
from .shard import WORK_DIR, ShardTask

__all__ = ["DEFAULT_BATCH_BYTES", "PLAN_NAME", "PROBE_ROWS", "RunPlan", "check_arguments"]

logger = logging.getLogger(__name__)

DEFAULT_BATCH_BYTES = 8 << 20
PROBE_ROWS = 256
PLAN_NAME = "plan.json"  # under <dest>/.preprocess/: RunPlan.to_json() of the run under way


def check_arguments(fn: Any, executor: str, next_from_row: Any, num_workers: Any, batch_rows: Any) -> None:
    """Raises ``ValueError``/``TypeError`` for a ``preprocess`` argument that no source could make valid.

    Example:
        >>> check_arguments(abs, "thread", "auto", 0, None)
        >>> try:
        ...     check_arguments(abs, "dask", "auto", 0, None)
        ... except ValueError as err:
        ...     print(err)
        `executor` must be one of ('process', 'thread', 'serial', 'ray'), got 'dask'
    """
    if executor not in EXECUTORS:
        raise ValueError(f"`executor` must be one of {EXECUTORS}, got {executor!r}")
    if next_from_row not in (True, False, "auto"):
        raise ValueError(f"`next_from_row` must be True, False or 'auto', got {next_from_row!r}")
    nonnegative_int(num_workers, "num_workers", allow_none=True)
    positive_int(batch_rows, "batch_rows", allow_none=True)
    if not callable(fn):
        raise TypeError(f"`fn` must be callable, got {type(fn).__name__}")


@dataclass
class RunPlan:
    """What a ``preprocess`` run writes, fixed before it writes anything."""

    root: Path  # source dataset directory (resolved)
    dest: Path  # output dataset directory (resolved)
    source_manifest: Manifest
    fn: Callable[[Any], Any]  # the caller's fn (a task may carry a picklable wrapper of it)
    limit: int  # rows written: whole episodes only
    num_episodes: int  # episodes written
    next_keys: list[Key]  # K whose ("next", K) is stored once
    dictionaries: dict[Key, bytes]  # zstd dictionary of each output column that has one
    tasks: list[ShardTask]  # one per output shard, in row order

    @classmethod
    def from_source(cls, source: str | os.PathLike | ShardedStorage, fn: Callable[[Any], Any],
                    dest: str | os.PathLike, *, num_workers: int | None, batch_rows: int | None,
                    next_from_row: bool | str, num_rows: int | None, encodings: dict | None) -> RunPlan:
        """Plans a run over ``source`` (arguments as :func:`~torchrl_ext.preprocessing.run.preprocess`'s)."""
        # a URL source is read through its cache root, which worker processes reopen by path
        root = Path(source.root if isinstance(source, ShardedStorage) else dataset_root(source, "source")).resolve()
        dest = user_path(dest, "dest").resolve()
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
        probe_rows = min(batch_rows, limit, PROBE_ROWS)
        schema, next_keys = _probe(src, fn, probe_rows, ends, next_from_row)
        schema = apply_encodings(schema, m.schema, encodings)
        schema, dictionaries = _dictionaries(src, fn, probe_rows, schema, root, dest)
        del src
        workers = num_workers if num_workers is not None else (os.cpu_count() or 1)
        # Pieces small enough to keep every worker busy; a big source shard becomes several output shards.
        max_task_rows = max(batch_rows, -(-limit // (4 * max(workers, 1))))
        tasks = _tasks(root, dest, m, limit, ends, has_final, schema, next_keys, batch_rows, fn, max_task_rows)
        return cls(root=root, dest=dest, source_manifest=m, fn=fn, limit=limit, num_episodes=num_eps,
                   next_keys=next_keys, dictionaries=dictionaries, tasks=tasks)

    @property
    def schema(self) -> list[Column]:
        """The output dataset's stored columns."""
        return self.tasks[0].stored_schema

    def to_json(self) -> dict:
        """The record ``<dest>/.preprocess/plan.json``; a run resumes only over an equal record.

        Keys: ``source`` (the source manifest's ``num_rows``, ``num_episodes`` and
        ``shards`` as ``[rows, checksum]`` pairs), ``limit`` (rows written),
        ``schema`` (stored columns, ``Column.to_json``), ``next_from_row`` (keys as lists).
        """
        m = self.source_manifest
        return {
            "source": {"num_rows": m.num_rows, "num_episodes": m.num_episodes,
                       "shards": [[s.rows, s.checksum] for s in m.shards]},
            "limit": self.limit,
            "schema": [c.to_json() for c in self.schema],
            "next_from_row": [list(k) for k in self.next_keys],
        }


def _episode_bounds(root: Path, m: Manifest) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    table = EpisodeTable.from_dataset(root, m.episodes)
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
            if (dest / WORK_DIR / PLAN_NAME).exists() and earlier.is_file():
                data[col.key] = read_inside(dest, earlier)
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


def _tasks(root: Path, dest: Path, m: Manifest, limit: int, ends: np.ndarray, has_final: np.ndarray,
           schema: list[Column], next_keys: list[Key], batch_rows: int, fn: Callable,
           max_task_rows: int) -> list[ShardTask]:
    """One task per source shard, split into equal pieces of at most ``max_task_rows`` rows."""
    tasks, offset = [], 0
    for s in m.shards:
        rows = max(0, min(offset + s.rows, limit) - offset)
        pieces = -(-rows // max_task_rows)
        cuts = [offset + (rows * i) // max(pieces, 1) for i in range(pieces + 1)]
        for start, stop in pairwise(cuts):
            a, b = np.searchsorted(ends, [start, stop])
            tasks.append(ShardTask(
                source=str(root), dest=str(dest), shard_id=len(tasks), start=start, stop=stop,
                num_rows=limit, ends=ends[a:b].copy(), end_episodes=np.arange(a, b),
                end_has_final=has_final[a:b].copy(), schema=schema, next_keys=next_keys,
                batch_rows=batch_rows, fn=fn))
        offset += s.rows
    return tasks
