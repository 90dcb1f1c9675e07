"""Events derived from stored columns after the fact; the shards are never rewritten.

Two derivations exist, each described by a JSON-ready dict (the form stored in
the index's ``meta.json``, see :mod:`torchrl_ext.events.index_file`):

``{"kind": "column", "prefix": "reward", "key": ["next", "reward"]}``
    Sign events of a scalar column: ``<prefix>:+1`` where the value is > 0,
    ``<prefix>:-1`` where it is < 0, with the value as the event's value.
``{"kind": "counters", "key": ["info", "stats"]}``
    Every column under the key prefix is a cumulative counter named by its
    last key part; a positive delta ``c[t] - c[t - 1]`` inside an episode is
    an event of that name at step ``t`` (step 0 yields none).

Functions here return plain arrays (``names``, ``name_id``, ``episode``,
``step``, ``row``, ``value``); :class:`~torchrl_ext.events.EventIndex` sorts
them into an index. They read only the columns a derivation names, one column
and :data:`CHUNK_ROWS` rows at a time, so their memory does not grow with the
dataset's other columns or its length (beyond the events found).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ..validation import positive_int

__all__ = ["CHUNK_ROWS", "Key", "check_columns_exist", "column_events", "counter_events", "derivation_flags",
           "derivations", "readable_keys"]

Key = tuple[str, ...]


def _as_key(key: Any, name: str) -> Key:
    parts = (key,) if isinstance(key, str) else key
    if not isinstance(parts, Sequence) or not all(isinstance(p, str) for p in parts):
        raise TypeError(f"`{name}` must be a str or a sequence of str (a nested key), got {key!r}")
    parts = tuple(parts)
    if not parts or not all(p and "/" not in p for p in parts):
        raise ValueError(f"`{name}` must be a non-empty key of non-empty parts without '/', got {key!r}")
    return parts


def derivations(columns: Mapping[str, str | Sequence[str]] | None,
                counters: Sequence[str | Sequence[str]]) -> list[dict[str, Any]]:
    """The derivation dicts of ``EventIndex.build``'s ``columns`` and ``counters`` arguments (types checked)."""
    out: list[dict[str, Any]] = []
    if columns is not None:
        if not isinstance(columns, Mapping):
            raise TypeError(f"`columns` must map an event prefix to a column key, e.g. "
                            f"{{'reward': ('next', 'reward')}}, got {columns!r}")
        for prefix, key in columns.items():
            if not isinstance(prefix, str) or not prefix:
                raise TypeError(f"`columns` prefixes must be non-empty str, got {prefix!r}")
            out.append({"kind": "column", "prefix": prefix, "key": list(_as_key(key, f"columns[{prefix!r}]"))})
    if isinstance(counters, str) or not isinstance(counters, Sequence):
        raise TypeError(f"`counters` must be a list of key prefixes, e.g. [('info', 'stats')], got {counters!r}")
    for i, key in enumerate(counters):
        out.append({"kind": "counters", "key": list(_as_key(key, f"counters[{i}]"))})
    return out


def readable_keys(manifest: Any) -> dict[Key, tuple[int, ...]]:
    """Every key ``ShardedStorage.get`` returns, with its per-row shape (stored and ``("next", key)``)."""
    keys = {tuple(c.key): tuple(c.shape) for c in manifest.schema}
    for k in manifest.next_from_row:
        if tuple(k) in keys:
            keys[("next", *k)] = keys[tuple(k)]
    return keys


def _listing(keys) -> str:
    return str(sorted("/".join(k) for k in keys))


def check_columns_exist(derived: Sequence[Mapping[str, Any]], manifest: Any) -> None:
    """``ValueError`` naming the argument and the existing keys when a derivation names no column."""
    keys = readable_keys(manifest)
    for d in derived:
        key = tuple(d["key"])
        if d["kind"] == "column":
            if key not in keys:
                raise ValueError(f"`columns` maps {d['prefix']!r} to {'/'.join(key)!r}, which is not a column of "
                                 f"the dataset; columns: {_listing(keys)}")
            if int(np.prod(keys[key], dtype=np.int64)) != 1:
                raise ValueError(f"`columns` key {'/'.join(key)!r} must hold one value per row, found per-row "
                                 f"shape {list(keys[key])}; pick a scalar column")
        elif not any(k[: len(key)] == key and len(k) > len(key) for k in keys):
            raise ValueError(f"`counters` prefix {'/'.join(key)!r} has no column under it; columns: "
                             f"{_listing(keys)}")


def derivation_flags(derived: Sequence[Mapping[str, Any]]) -> str:
    """The ``torchrl-ext events ROOT --build`` flags that rebuild ``derived`` (leading space when any)."""
    flags = []
    for d in derived:
        key = shlex.quote("/".join(d["key"]))
        if d["kind"] == "column":
            flags.append(f"--column {shlex.quote(d['prefix'])} {key}")
        else:
            flags.append(f"--counters {key}")
    return "".join(f" {f}" for f in flags)


CHUNK_ROWS = 1 << 16
"""Rows a derivation reads at a time: its extra memory is this many values of one column."""


def _rows_to_scan(storage: Any, num_rows: int | None) -> tuple[np.ndarray, int]:
    """Every episode's first row, and how many rows a derivation reads (the first ``num_rows``, default all)."""
    first, length = storage.episode_bounds
    total = int(np.sum(length, dtype=np.int64))
    n = min(len(storage), total) if num_rows is None else min(num_rows, total)
    return np.asarray(first, np.int64), n


def _chunks(n: int, chunk_rows: int) -> Iterator[tuple[int, int]]:
    """``(lo, hi)`` row ranges of at most ``chunk_rows`` rows covering ``[0, n)``."""
    for lo in range(0, n, chunk_rows):
        yield lo, min(lo + chunk_rows, n)


def _read(storage: Any, key: Key, lo: int, hi: int) -> np.ndarray:
    """Values of the scalar column ``key`` at rows ``[lo, hi)`` as float64; no other column is read."""
    rows = np.arange(lo, hi, dtype=np.int64)
    return storage.reader.gather(rows, keys=[key])[key].reshape(hi - lo).astype(np.float64)


def _located(first: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(episode, step)`` of global rows (an empty episode holds no row, so it is never found)."""
    episode = np.searchsorted(first, row, side="right") - 1
    return episode, row - first[episode]


def _events(names: list[str], ids: list[np.ndarray], rows: list[np.ndarray], vals: list[np.ndarray],
            first: np.ndarray) -> dict[str, Any]:
    row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    episode, step = _located(first, row)
    return {"names": names, "name_id": np.concatenate(ids) if ids else np.zeros(0, np.int64),
            "episode": episode, "step": step, "row": row,
            "value": np.concatenate(vals) if vals else np.zeros(0)}


def column_events(storage: Any, key: Key, prefix: str, *, num_rows: int | None = None,
                  chunk_rows: int = CHUNK_ROWS) -> dict[str, Any]:
    """Sign events of the scalar column ``key`` over the first ``num_rows`` rows (default: all).

    Only ``key`` is read, ``chunk_rows`` rows at a time, through the storage's
    reader (``storage.reader.gather(rows, keys=[key])``).
    """
    chunk_rows = positive_int(chunk_rows, "chunk_rows")
    first, n = _rows_to_scan(storage, num_rows)
    ids, rows, vals = [], [], []
    for lo, hi in _chunks(n, chunk_rows):
        v = _read(storage, key, lo, hi)
        hit = np.flatnonzero(v != 0)
        ids.append((v[hit] < 0).astype(np.int64))
        rows.append(hit + lo)
        vals.append(v[hit])
    return _events([f"{prefix}:+1", f"{prefix}:-1"], ids, rows, vals, first)


def counter_events(storage: Any, prefix: Key, *, num_rows: int | None = None,
                   chunk_rows: int = CHUNK_ROWS) -> dict[str, Any]:
    """Positive-delta events of every counter column under ``prefix`` (first ``num_rows`` rows).

    Only the counter columns are read, one column and ``chunk_rows`` rows at a time.
    """
    chunk_rows = positive_int(chunk_rows, "chunk_rows")
    keys = [k for k in readable_keys(storage.manifest) if k[: len(prefix)] == prefix and len(k) > len(prefix)]
    first, n = _rows_to_scan(storage, num_rows)
    last: list[np.ndarray | None] = [None] * len(keys)
    ids, rows, vals = [], [], []
    for lo, hi in _chunks(n, chunk_rows):
        at_start = _located(first, np.arange(lo, hi, dtype=np.int64))[1] == 0
        for k, key in enumerate(keys):
            c = _read(storage, key, lo, hi)
            prev = np.concatenate([c[:1] if last[k] is None else last[k], c[:-1]])
            last[k] = c[-1:]
            delta = c - prev
            hit = np.flatnonzero((delta > 0) & ~at_start)
            ids.append(np.full(len(hit), k, np.int64))
            rows.append(hit + lo)
            vals.append(delta[hit])
    return _events([key[-1] for key in keys], ids, rows, vals, first)
