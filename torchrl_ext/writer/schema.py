"""What an episode must look like: TED layout, the owned columns, dtypes, events and metadata.

The first episode fixes the dataset's schema (:func:`infer_schema`); every
later episode is checked against it before anything is buffered, so a bad
episode is refused without costing the episodes before it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..format import DTYPES, Column, Key
from ..format.episodes import MetadataTypes, check_metadata_name, sql_type

__all__ = [
    "OWNED",
    "REQUIRED",
    "DONE_KEYS",
    "OBSERVATION_KEYS",
    "check_dtype",
    "flatten_episode",
    "episode_length",
    "infer_schema",
    "split_episode",
    "check_events",
    "MetadataTypes",
    "sql_type",
    "check_metadata_name",
]

OWNED: tuple[Key, ...] = (("episode",), ("step",))  # written by the dataset, not the caller
REQUIRED: tuple[Key, ...] = (("next", "reward"), ("next", "done"))
DONE_KEYS = ("done", "terminated", "truncated")
OBSERVATION_KEYS: tuple[Key, ...] = (("observation",), ("pixels",))


def _name(key: Key) -> str:
    return repr(key[0]) if len(key) == 1 else repr(key)


def check_dtype(dtype: np.dtype, key: Key, fix: str) -> None:
    """``TypeError`` unless ``dtype`` is one the format stores (``fix`` says what to do)."""
    if np.dtype(dtype).name not in DTYPES:
        raise TypeError(f"{_name(key)} has dtype {dtype}; storable dtypes are {sorted(DTYPES)}: {fix}")


def flatten_episode(data: Any, prefix: Key = ()) -> dict[Key, np.ndarray]:
    """Nested TensorDict / mapping of tensors or arrays -> {key tuple: numpy array}."""
    out: dict[Key, np.ndarray] = {}
    items = data.items() if isinstance(data, Mapping) else data.items(include_nested=False)
    for k, v in items:
        key = (*prefix, k)
        if isinstance(v, Mapping) or (hasattr(v, "batch_size") and hasattr(v, "items")):
            out.update(flatten_episode(v, key))
        elif isinstance(v, torch.Tensor):
            out[key] = v.detach().cpu().numpy()
        elif isinstance(v, np.ndarray):
            out[key] = v
        else:
            raise TypeError(
                f"episode entry {key!r} must be a tensor or numpy array, got {type(v).__name__}"
            )
    return out


def episode_length(cols: Mapping[Key, np.ndarray]) -> int:
    lengths = {k: (v.shape[0] if v.ndim else None) for k, v in cols.items()}
    values = set(lengths.values())
    if None in values or len(values) != 1:
        raise ValueError(
            f"every episode entry must have the same leading (time) dimension, got "
            f"{ {'/'.join(k): n for k, n in lengths.items()} }"
        )
    length = values.pop()
    if length == 0:
        raise ValueError("episode has 0 steps; expected at least 1")
    return length


def infer_schema(cols: Mapping[Key, np.ndarray],
                 store_next: Sequence[Key] = ()) -> tuple[list[Column], list[Key]]:
    """The schema fixed by a first episode: stored columns and the keys stored once (``next_from_row``).

    A key in ``store_next`` keeps its ``("next", *key)`` as a column of its own
    instead of the next row's value.
    """
    for key in REQUIRED:
        if key not in cols:
            raise ValueError(
                f"episode is missing {key!r}; expected TorchRL's TED layout with "
                f"{REQUIRED} (see torchrl_ext.ShardWriter)"
            )
    obs_like = [
        k for k in cols
        if k[0] != "next" and k[-1] not in DONE_KEYS
        and (("next", *k) in cols or k in OBSERVATION_KEYS) and k not in set(store_next)
    ]
    stored = {k: v for k, v in cols.items() if k[0] != "next" or k[1:] not in obs_like}
    stored.setdefault(("next", "terminated"), cols[("next", "done")])
    stored.setdefault(("next", "truncated"), np.zeros_like(cols[("next", "done")]))
    for key in OWNED:
        stored[key] = np.zeros(1, dtype=np.int64)
    for key, v in stored.items():
        check_dtype(np.asarray(v).dtype, key, "cast it before writing")
    schema = [Column(k, np.asarray(v).dtype, tuple(v.shape[1:])) for k, v in stored.items()]
    return schema, obs_like


def _check_column(col: Column, arr: np.ndarray, key: Key | None = None) -> None:
    key = key or col.key
    if tuple(arr.shape[1:]) != col.shape:
        raise ValueError(
            f"episode entry {key!r} has per-step shape {tuple(arr.shape[1:])}, the dataset "
            f"expects {col.shape}; reshape it or write a new dataset"
        )
    if arr.dtype != col.dtype:
        raise TypeError(
            f"episode entry {key!r} has dtype {arr.dtype}, the dataset expects {col.dtype}; "
            "cast it before writing"
        )


def split_episode(cols: dict[Key, np.ndarray], schema: list[Column], next_from_row: list[Key],
                  length: int) -> tuple[dict[Key, np.ndarray], dict[Key, np.ndarray] | None]:
    """Checks an episode against the schema; returns its stored columns and its final values."""
    cols = dict(cols)
    if ("next", "terminated") not in cols:
        cols[("next", "terminated")] = cols.get(("next", "done"))
    if ("next", "truncated") not in cols and ("next", "done") in cols:
        cols[("next", "truncated")] = np.zeros_like(cols[("next", "done")])
    rows: dict[Key, np.ndarray] = {}
    by_key = {c.key: c for c in schema}
    for col in schema:
        if col.key in OWNED:
            continue
        arr = cols.get(col.key)
        if arr is None:
            raise ValueError(
                f"episode is missing {col.key!r}; the dataset's schema has {[c.key for c in schema]}"
            )
        _check_column(col, arr)
        rows[col.key] = arr
    extra = set(cols) - set(by_key) - {("next", *k) for k in next_from_row} - set(OWNED)
    if extra:
        raise ValueError(
            f"episode has keys {sorted(extra)} that the dataset's schema does not; "
            "write them into a new dataset or drop them"
        )
    final = None
    nexts = {k: cols.get(("next", *k)) for k in next_from_row}
    if nexts and all(v is not None for v in nexts.values()):
        final = {}
        for k, v in nexts.items():
            _check_column(by_key[k], v, ("next", *k))
            final[k] = v[length - 1]
    return rows, final


def check_events(events: Sequence[tuple[int, str, float]] | None, length: int) -> list[tuple[int, str, float]]:
    """Validates ``(step, name, value)`` triples of an episode of ``length`` steps."""
    out = []
    for ev in events or ():
        try:
            step, name, value = ev
        except (TypeError, ValueError):
            raise ValueError(f"an event must be a (step, name, value) triple, got {ev!r}") from None
        if not isinstance(name, str) or not name:
            raise ValueError(f"event name must be a non-empty str, got {name!r}")
        if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)) \
                or not 0 <= int(step) < length:
            raise ValueError(
                f"event {name!r} has step {step!r}; expected an int in [0, {length}) for "
                f"an episode of {length} steps"
            )
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"event {name!r} has value {value!r}; expected a number") from None
        out.append((int(step), name, value))
    return out
