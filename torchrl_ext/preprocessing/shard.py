"""One preprocessing task: source rows ``[start, stop)`` -> one output shard.

A task streams its rows through ``fn`` in batches of ``batch_rows``, appends
the output columns to ``<dest>/shards/.tmp-<id>/`` (``PendingShard``), seals
and renames it to ``<dest>/shards/<id>``, then writes its record
``<dest>/.preprocess/shard-<id>.json`` atomically. A task whose record exists
and whose shard passes the size and checksum checks is not recomputed.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..format import (
    FINAL_ROW,
    Column,
    FormatError,
    Key,
    Manifest,
    ShardInfo,
    atomic_write_json,
    load_dictionaries,
    read_inside,
    validate_shards,
    verify_shard,
)
from ..format.files import loads_json
from ..storages import ShardedStorage
from ..writer import PendingShard
from ..writer.schema import OWNED
from .schema import conform, flatten_output, rows_equal

__all__ = ["ShardTask", "run_task", "WORK_DIR"]

WORK_DIR = ".preprocess"


@dataclass
class ShardTask:
    """Everything a worker needs; pickled to worker processes (the storage travels by path)."""

    source: str
    dest: str
    shard_id: int
    start: int
    stop: int
    num_rows: int
    ends: np.ndarray  # global rows of episode ends in [start, stop]
    end_episodes: np.ndarray  # episode id of each end
    end_has_final: np.ndarray  # the source stores a final value for that episode
    schema: list[Column]  # fn output columns (episode/step excluded)
    next_keys: list[Key]  # K whose ("next", K) is stored once
    batch_rows: int
    fn: Callable[[Any], Any]

    @property
    def name(self) -> str:
        return f"{self.shard_id:06d}"

    @property
    def stored_schema(self) -> list[Column]:
        skip = {("next", *k) for k in self.next_keys}
        cols = [c for c in self.schema if c.key not in skip]
        return cols + [Column(k, np.dtype(np.int64), ()) for k in OWNED]

    @property
    def final_cols(self) -> list[Column]:
        if not self.next_keys:
            return []
        by_key = {c.key: c for c in self.schema}
        return [Column(FINAL_ROW, np.dtype(np.int64), ())] + [
            Column(k, by_key[k].dtype, by_key[k].shape) for k in self.next_keys]

    @property
    def record_path(self) -> Path:
        return Path(self.dest) / WORK_DIR / f"shard-{self.name}.json"


def _finished(task: ShardTask) -> dict | None:
    """The task's record if its shard is complete and intact, else None."""
    try:
        rec = loads_json(read_inside(task.dest, task.record_path).decode("utf-8"))  # FormatError: redone
        info = ShardInfo(**rec["shard"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if rec.get("start") != task.start or rec.get("stop") != task.stop:
        return None
    probe = Manifest(schema=task.stored_schema, next_from_row=list(task.next_keys), shards=[info])
    try:
        validate_shards(task.dest, probe)
        verify_shard(task.dest, probe, info)
    except FormatError:
        return None
    return rec


def run_task(task: ShardTask) -> dict:
    """Runs (or verifies and skips) one task; returns its record."""
    rec = _finished(task)
    if rec is not None:
        rec["reused"] = True
        return rec
    dest = Path(task.dest)
    task.record_path.unlink(missing_ok=True)
    shutil.rmtree(dest / "shards" / task.name, ignore_errors=True)
    storage = ShardedStorage(task.source, cache_bytes=0)
    pending = PendingShard(dest, task.shard_id, task.stored_schema, task.final_cols,
                           load_dictionaries(dest, task.stored_schema))
    try:
        final_episodes = _stream(task, storage, pending)
        info = pending.seal(dest, task.name)
    except BaseException:
        pending.discard()
        raise
    rec = {"shard": info.to_json(), "start": task.start, "stop": task.stop,
           "final_episodes": final_episodes}
    atomic_write_json(task.record_path, rec)
    rec["reused"] = False
    return rec


def _stream(task: ShardTask, storage: ShardedStorage, pending: PendingShard) -> list[int]:
    final_episodes: list[int] = []
    carry: dict[Key, np.ndarray] | None = None
    for a in range(task.start, task.stop, task.batch_rows):
        b = min(a + task.batch_rows, task.stop)
        where = f"rows [{a}, {b})"
        td = storage.get(slice(a, b))
        owned = {k: td.get(k).numpy().copy() for k in OWNED}
        flat = flatten_output(task.fn(td), b - a, where)
        conform(flat, task.schema, where)
        for k in OWNED:
            if k in flat and not np.array_equal(flat[k], owned[k]):
                raise ValueError(
                    f"`fn` output {k[0]!r} differs from the source for {where}; output rows must "
                    "stay aligned with source rows (do not reorder, drop or add rows)"
                )
        rows = np.arange(a, b)
        pos = np.minimum(np.searchsorted(task.ends, rows), max(len(task.ends) - 1, 0))
        is_last = task.ends[pos] == rows if len(task.ends) else np.zeros(b - a, bool)
        carry = _check_next(task, flat, is_last, carry, a)
        cols = {c.key: flat[c.key] for c in task.stored_schema if c.key not in OWNED}
        cols.update(owned)
        pending.append(cols)
        for j in np.flatnonzero(is_last):
            e = np.searchsorted(task.ends, a + j)
            vals = {k: flat[("next", *k)][j] for k in task.next_keys}
            if task.next_keys and (task.end_has_final[e] or any(v.any() for v in vals.values())):
                pending.append_final(int(a + j - task.start), vals)
                final_episodes.append(int(task.end_episodes[e]))
    if carry is not None and task.stop < task.num_rows:
        where = f"row {task.stop} (first row after this shard)"
        flat = flatten_output(task.fn(storage.get(slice(task.stop, task.stop + 1))), 1, where)
        conform(flat, task.schema, where)
        _check_next(task, flat, np.ones(1, bool), carry, task.stop)
    return final_episodes


def _check_next(task: ShardTask, flat: dict[Key, np.ndarray], is_last: np.ndarray,
                carry: dict[Key, np.ndarray] | None, first_row: int) -> dict[Key, np.ndarray] | None:
    """Checks that ``("next", K)`` is the next row's ``K`` inside episodes; returns the new carry."""
    for k in task.next_keys:
        cur, nxt = flat[k], flat[("next", *k)]
        bad = None
        if carry is not None and not rows_equal(carry[k][None], cur[:1])[0]:
            bad = first_row - 1
        else:
            ok = rows_equal(nxt[:-1], cur[1:]) | is_last[:-1]
            if not ok.all():
                bad = first_row + int(np.flatnonzero(~ok)[0])
        if bad is not None:
            raise ValueError(
                f"`fn` output {('next', *k)!r} at row {bad} differs from {k!r} at row {bad + 1} "
                "of the same episode, so it cannot be stored once; pass next_from_row=False to "
                "store it as a column"
            )
    if not task.next_keys or is_last[-1]:
        return None
    return {k: flat[("next", *k)][-1].copy() for k in task.next_keys}
