"""Output schema of a preprocessing function: inferred from the first batch, then enforced.

The output of ``fn`` is flattened to ``{key tuple: numpy array}``. The first
batch fixes the keys, dtypes and per-row shapes; every later batch must match
them exactly, with one output row per input row.

Next-observation-like keys: when ``fn`` returns both ``K`` and ``("next", K)``
with the same dtype and shape, and ``("next", K)`` of a row equals (bit for
bit) ``K`` of the following row of the same episode, ``("next", K)`` is stored
once, as the dataset writer does (``next_from_row`` in the manifest): only its
value at each episode's last step is kept, as the episode's final value.
Otherwise ``("next", K)`` is stored as a plain column.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..format import DTYPES, Column, Key
from ..writer.schema import OWNED

__all__ = ["flatten_output", "infer_schema", "conform", "next_candidates", "rows_equal", "apply_encodings"]


def _name(key: Key) -> str:
    return repr(key[0]) if len(key) == 1 else repr(key)


def flatten_output(out: Any, rows: int, where: str) -> dict[Key, np.ndarray]:
    """TensorDict returned by ``fn`` -> ``{key: contiguous numpy array}``, checking row counts."""
    if not (hasattr(out, "batch_size") and hasattr(out, "items")):
        raise TypeError(f"`fn` must return a TensorDict, got {type(out).__name__} for {where}")
    flat: dict[Key, np.ndarray] = {}
    for key, value in out.items(include_nested=True, leaves_only=True):
        key = (key,) if isinstance(key, str) else tuple(key)
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"`fn` output {_name(key)} is a {type(value).__name__}, expected a tensor "
                f"(for {where}); only tensors can be stored"
            )
        if value.ndim == 0 or value.shape[0] != rows:
            found = "a scalar" if value.ndim == 0 else f"{value.shape[0]} rows"
            raise ValueError(
                f"`fn` output {_name(key)} has {found} for a batch of {rows} rows ({where}); "
                "fn must return one output row per input row"
            )
        arr = value.detach().cpu().contiguous().numpy()
        if arr.dtype.name not in DTYPES:
            raise TypeError(
                f"`fn` output {_name(key)} has dtype {value.dtype}; storable dtypes are "
                f"{sorted(DTYPES)}: cast it in fn"
            )
        flat[key] = arr
    return flat


def infer_schema(flat: dict[Key, np.ndarray]) -> list[Column]:
    """Columns of the first batch (``episode``/``step`` excluded: the dataset owns them)."""
    return [Column(k, v.dtype, tuple(v.shape[1:])) for k, v in flat.items() if k not in OWNED]


def next_candidates(schema: list[Column]) -> list[Key]:
    """Keys ``K`` whose ``("next", K)`` is also in ``schema`` with the same dtype and shape."""
    cols = {c.key: c for c in schema}
    out = []
    for c in schema:
        if c.key[0] == "next" or c.key in OWNED:
            continue
        n = cols.get(("next", *c.key))
        if n is not None and n.dtype == c.dtype and n.shape == c.shape:
            out.append(c.key)
    return out


def conform(flat: dict[Key, np.ndarray], schema: list[Column], where: str) -> None:
    """Checks a later batch against the first batch's schema; the error names the key."""
    expected = {c.key: c for c in schema}
    for key in expected:
        if key not in flat:
            raise ValueError(
                f"`fn` output is missing {_name(key)} for {where}; the first batch had it and "
                "fn must return the same keys for every batch"
            )
    for key, arr in flat.items():
        if key in OWNED:
            continue
        col = expected.get(key)
        if col is None:
            raise ValueError(
                f"`fn` output has {_name(key)} for {where}, which the first batch did not; "
                "fn must return the same keys for every batch"
            )
        if arr.dtype != col.dtype:
            raise TypeError(
                f"`fn` output {_name(key)} has dtype {arr.dtype} for {where}, the first batch "
                f"gave {col.dtype}; cast it in fn so every batch has the same dtype"
            )
        if tuple(arr.shape[1:]) != col.shape:
            raise ValueError(
                f"`fn` output {_name(key)} has per-row shape {tuple(arr.shape[1:])} for {where}, "
                f"the first batch gave {col.shape}; fn must keep shapes fixed"
            )


def rows_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise equality of rows (NaN equals itself): bool ``[rows]``."""
    n = a.shape[0]
    if a.size == 0:
        return np.ones(n, dtype=bool)
    av = np.ascontiguousarray(a).reshape(n, -1).view(np.uint8)
    bv = np.ascontiguousarray(b).reshape(n, -1).view(np.uint8)
    return (av == bv).all(axis=1)


def apply_encodings(schema: list[Column], source: list[Column], encodings: dict | None) -> list[Column]:
    """Output columns with encodings: ``encodings`` first, else the source column's when it matches.

    A source column's encoding carries over when the output has the same key,
    dtype and per-row shape; other columns are raw.
    """
    from ..encodings import check_column, resolve_encoding

    by_key = {c.key: c for c in source}
    chosen: dict[Key, Any] = {}
    for key, spec in (encodings or {}).items():
        k = (key,) if isinstance(key, str) else tuple(key)
        chosen[k] = resolve_encoding(spec)
    names = {c.key for c in schema}
    unknown = sorted(k for k in chosen if k not in names)
    if unknown:
        raise ValueError(f"`encodings` names {unknown}, which `fn` does not return; it returns {sorted(names)}")
    out = []
    for col in schema:
        if col.key in chosen:
            enc = chosen[col.key]
            if enc.name == "raw":
                out.append(col)
                continue
            try:
                check_column(enc, col.dtype, col.shape)
            except ValueError as err:
                raise ValueError(f"`encodings` for {col.key!r}: {err}") from None
            out.append(col.with_encoding(enc.name, enc.to_json()))
            continue
        src = by_key.get(col.key)
        if src is not None and src.encoding != "raw" and src.dtype == col.dtype and src.shape == col.shape:
            out.append(col.with_encoding(src.encoding, src.options_dict))
        else:
            out.append(col)
    return out
