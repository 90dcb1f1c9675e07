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
them into an index.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..validation import positive_int

__all__ = ["Key", "derivations", "check_columns_exist", "derivation_flags", "column_events", "counter_events",
           "readable_keys"]

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


def _episode_of_rows(storage: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    first, length = storage.episode_bounds
    first = np.asarray(first, np.int64)
    length = np.asarray(length, np.int64)
    return first, length, np.repeat(np.arange(len(first), dtype=np.int64), length)


def column_events(storage: Any, key: Key, prefix: str, *, num_rows: int | None = None,
                  chunk_rows: int = 1 << 20) -> dict[str, Any]:
    """Sign events of the scalar column ``key`` over the first ``num_rows`` rows (default: all)."""
    chunk_rows = positive_int(chunk_rows, "chunk_rows")
    first, _, ep_of_row = _episode_of_rows(storage)
    n = min(len(storage), len(ep_of_row)) if num_rows is None else min(num_rows, len(ep_of_row))
    ids, rows, vals = [], [], []
    for lo in range(0, n, chunk_rows):
        hi = min(lo + chunk_rows, n)
        v = storage.get(slice(lo, hi)).get(key).numpy().reshape(hi - lo).astype(np.float64)
        hit = np.flatnonzero(v != 0)
        ids.append((v[hit] < 0).astype(np.int64))
        rows.append(hit + lo)
        vals.append(v[hit])
    row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    episode = ep_of_row[row]
    return {"names": [f"{prefix}:+1", f"{prefix}:-1"],
            "name_id": np.concatenate(ids) if ids else np.zeros(0, np.int64),
            "episode": episode, "step": row - first[episode], "row": row,
            "value": np.concatenate(vals) if vals else np.zeros(0)}


def counter_events(storage: Any, prefix: Key, *, num_rows: int | None = None,
                   chunk_rows: int = 1 << 20) -> dict[str, Any]:
    """Positive-delta events of every counter column under ``prefix`` (first ``num_rows`` rows)."""
    chunk_rows = positive_int(chunk_rows, "chunk_rows")
    keys = [k for k in readable_keys(storage.manifest) if k[: len(prefix)] == prefix and len(k) > len(prefix)]
    first, length, ep_of_row = _episode_of_rows(storage)
    n = min(len(storage), len(ep_of_row)) if num_rows is None else min(num_rows, len(ep_of_row))
    is_first = np.zeros(len(ep_of_row), bool)
    is_first[first[length > 0]] = True
    last = [None] * len(keys)
    ids, rows, vals = [], [], []
    for lo in range(0, n, chunk_rows):
        hi = min(lo + chunk_rows, n)
        data = storage.get(slice(lo, hi))
        for k, key in enumerate(keys):
            c = data.get(key).numpy().reshape(hi - lo).astype(np.float64)
            prev = np.concatenate([c[:1] if last[k] is None else last[k], c[:-1]])
            last[k] = c[-1:]
            delta = c - prev
            hit = np.flatnonzero((delta > 0) & ~is_first[lo:hi])
            ids.append(np.full(len(hit), k, np.int64))
            rows.append(hit + lo)
            vals.append(delta[hit])
    row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    episode = ep_of_row[row]
    return {"names": [key[-1] for key in keys], "name_id": np.concatenate(ids) if ids else np.zeros(0, np.int64),
            "episode": episode, "step": row - first[episode], "row": row,
            "value": np.concatenate(vals) if vals else np.zeros(0)}
