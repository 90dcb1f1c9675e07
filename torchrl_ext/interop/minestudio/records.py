"""MineStudio's pickled chunks as columns: actions (dicts of arrays) and meta_info (lists of dicts).

``ActionConvertCallback`` stores each action chunk as a pickled
``{button or "camera": array [chunk_size, ...]}``; ``MetaInfoConvertCallback``
stores each meta_info chunk as a pickled list of one dict per frame. Both are
loaded with the restricted unpickler only.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ...format import FormatError
from ...sources.safe_pickle import safe_loads

__all__ = ["action_columns", "meta_records", "numeric_fields", "meta_columns", "meta_events"]

_STORABLE = frozenset("bool int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64".split())


def action_columns(chunks: Iterable[bytes], frames: int, where: str) -> dict[str, np.ndarray]:
    """``{key: array [frames, ...]}`` of an episode's action chunks, keys as MineStudio stores them.

    Raises:
        FormatError: a chunk that is not a dict of arrays of one length, keys
            that change between chunks, or a total other than ``frames``.
    """
    parts: dict[str, list[np.ndarray]] = {}
    keys: tuple[str, ...] | None = None
    for c, raw in enumerate(chunks):
        value = safe_loads(raw, f"{where} action chunk {c}")
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise FormatError(f"{where} action chunk {c}: expected a dict of arrays keyed by str, found "
                              f"{type(value).__name__}; the action part is damaged")
        if keys is None:
            keys = tuple(value)
        elif tuple(value) != keys and set(value) != set(keys):
            raise FormatError(f"{where} action chunk {c}: keys {sorted(value)} differ from the first chunk's "
                              f"{sorted(keys)}; the action part is damaged")
        for k in keys:
            arr = np.asarray(value[k])
            if arr.ndim == 0 or arr.dtype.name not in _STORABLE:
                raise FormatError(f"{where} action chunk {c}: {k!r} must be a numeric array [chunk, ...], found "
                                  f"dtype {arr.dtype} shape {arr.shape}")
            parts.setdefault(k, []).append(arr)
    out = {k: np.concatenate(v) for k, v in parts.items()}
    bad = {k: len(v) for k, v in out.items() if len(v) != frames}
    if bad:
        raise FormatError(f"{where}: action arrays hold {bad} rows, expected {frames} (the episode's frames)")
    return out


def meta_records(chunks: Iterable[bytes], frames: int, where: str) -> list[dict[str, Any]]:
    """The per-frame dicts of an episode's meta_info chunks.

    Raises:
        FormatError: a chunk that is not a list of dicts, or a total other than ``frames``.
    """
    records: list[dict[str, Any]] = []
    for c, raw in enumerate(chunks):
        value = safe_loads(raw, f"{where} meta_info chunk {c}")
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            raise FormatError(f"{where} meta_info chunk {c}: expected a list of per-frame dicts, found "
                              f"{type(value).__name__}; the meta_info part is damaged")
        records.extend(value)
    if len(records) != frames:
        raise FormatError(f"{where}: meta_info holds {len(records)} frames, expected {frames}")
    return records


def _is_number(value: Any) -> bool:
    return isinstance(value, (numbers.Number, np.bool_, np.number)) and not isinstance(value, complex)


def numeric_fields(records: Sequence[Mapping[str, Any]], names: Sequence[str] | None = None) -> dict[str, np.dtype]:
    """Column dtypes of the meta_info fields to store: ``names``, or the top-level numeric fields of the first record.

    Booleans become ``bool`` columns, every other number ``float64`` (a
    missing value is NaN).

    Raises:
        ValueError: a name that is not a plain field name.
    """
    first = records[0] if records else {}
    if names is None:
        names = [n for n, v in first.items() if isinstance(n, str) and n and "/" not in n and _is_number(v)]
    out: dict[str, np.dtype] = {}
    for name in names:
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"`meta_fields` entries must be field names without '/', got {name!r}")
        out[name] = np.dtype(bool) if isinstance(first.get(name), (bool, np.bool_)) else np.dtype(np.float64)
    return out


def meta_columns(records: Sequence[Mapping[str, Any]], fields: Mapping[str, np.dtype], where: str
                 ) -> dict[str, np.ndarray]:
    """``{field: array [frames]}``; a missing or None value is NaN (False for bool fields).

    Raises:
        FormatError: a value that is not a number.
    """
    out = {}
    for name, dtype in fields.items():
        fill = False if dtype == bool else np.nan
        values = [r.get(name) for r in records]
        try:
            out[name] = np.asarray([fill if v is None else v for v in values], dtype=dtype)
        except (TypeError, ValueError) as err:
            raise FormatError(f"{where}: meta_info field {name!r} holds a value that is not a number ({err}); "
                              "leave the field out with `meta_fields`") from err
    return out


def meta_events(records: Sequence[Mapping[str, Any]], field: str = "events") -> list[tuple[int, str, float]]:
    """``(frame, name, value)`` of the per-frame event dicts in ``field``, as ``event_convertion.py`` reads them."""
    out = []
    for t, record in enumerate(records):
        events = record.get(field)
        if not isinstance(events, Mapping):
            continue
        for name, value in events.items():
            if isinstance(name, str) and name and _is_number(value):
                out.append((t, name, float(value)))
    return out
