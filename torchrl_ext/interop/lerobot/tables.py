"""The parquet and JSON files of a LeRobot v3.0 dataset, written as ``lerobot==0.4.x`` writes them.

- ``data/chunk-000/file-000.parquet``: one row per frame, one column per
  non-video feature (shape ``[1]``: a scalar column; ``[k]``: a fixed-size
  list), then ``timestamp`` (float32), ``frame_index``, ``episode_index``,
  ``index`` and ``task_index`` (int64).
- ``meta/episodes/chunk-000/file-000.parquet``: one row per episode (see
  :mod:`.layout`), plus ``meta/episodes/chunk_index`` and ``file_index``.
- ``meta/tasks.parquet``: ``task_index`` with the task text as the pandas
  index (column ``__index_level_0__`` and the ``pandas`` schema metadata that
  makes ``pandas.read_parquet`` restore it, which LeRobot reads the text from).
- ``meta/stats.json``: ``min``, ``max``, ``mean``, ``std`` and ``count`` per
  feature (videos per channel, ``[3, 1, 1]``, in ``[0, 1]``), as LeRobot
  normalises with them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ...format.files import atomic_write_json
from .layout import load_pyarrow

__all__ = ["Stats", "data_table", "episodes_table", "write_stats", "write_table", "write_tasks"]


def _arrow(values: np.ndarray, shape: tuple[int, ...]) -> Any:
    pa = load_pyarrow()
    if shape == (1,):
        return pa.array(values.reshape(len(values)))
    flat = pa.array(np.ascontiguousarray(values).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, shape[0])


def data_table(columns: dict[str, tuple[np.ndarray, tuple[int, ...]]]) -> Any:
    """``{name: (values [T, ...], LeRobot shape)}`` as one arrow table (column order kept)."""
    pa = load_pyarrow()
    return pa.table({name: _arrow(v, shape) for name, (v, shape) in columns.items()})


def write_table(table: Any, path: Path) -> None:
    pa = load_pyarrow()
    path.parent.mkdir(parents=True, exist_ok=True)
    pa.parquet.write_table(table, str(path), compression="snappy")


def write_tasks(tasks: list[str], path: Path) -> None:
    """``meta/tasks.parquet`` for ``tasks`` (text by task_index)."""
    pa = load_pyarrow()
    pandas_meta = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode", "numpy_type": "object",
             "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    table = pa.table({"task_index": pa.array(np.arange(len(tasks), dtype=np.int64)),
                      "__index_level_0__": pa.array(tasks, pa.string())})
    write_table(table.replace_schema_metadata({"pandas": json.dumps(pandas_meta)}), path)


def episodes_table(rows: list[dict[str, Any]]) -> Any:
    """One row per episode (``tasks`` a list of text, the rest numbers), columns in the first row's order."""
    pa = load_pyarrow()
    cols = {k: [r[k] for r in rows] for k in rows[0]}
    types = {k: pa.list_(pa.string()) if k == "tasks" else
             pa.float64() if k.endswith("timestamp") else pa.int64() for k in cols}
    return pa.table({k: pa.array(v, types[k]) for k, v in cols.items()})


class Stats:
    """Running ``min``/``max``/``mean``/``std``/``count`` per feature (sums in float64)."""

    def __init__(self) -> None:
        self._acc: dict[str, list[Any]] = {}

    def add(self, name: str, values: np.ndarray, frames: bool = False) -> None:
        """Adds ``values [T, ...]`` (``frames``: uint8 ``[T, H, W, C]``, reduced per channel)."""
        v = values.astype(np.float64)
        if frames:
            v = v.reshape(-1, v.shape[-1]) / 255.0
        else:
            v = v.reshape(len(v), -1)
        lo, hi, s, s2 = v.min(0), v.max(0), v.sum(0), (v * v).sum(0)
        acc = self._acc.get(name)
        if acc is None:
            self._acc[name] = [lo, hi, s, s2, len(v), len(values), frames]
        else:
            acc[0], acc[1] = np.minimum(acc[0], lo), np.maximum(acc[1], hi)
            acc[2], acc[3], acc[4], acc[5] = acc[2] + s, acc[3] + s2, acc[4] + len(v), acc[5] + len(values)

    def to_json(self) -> dict[str, dict[str, list]]:
        out = {}
        for name, (lo, hi, s, s2, n, count, frames) in self._acc.items():
            mean = s / n
            std = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))
            shape = (-1, 1, 1) if frames else (-1,)
            out[name] = {k: np.asarray(v).reshape(shape).tolist() for k, v in
                         (("min", lo), ("max", hi), ("mean", mean), ("std", std))}
            out[name]["count"] = [int(count)]
        return out


def write_stats(stats: Stats, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, stats.to_json(), indent=4)
