"""The ``("next", K)`` value at an episode's last step, for keys ``K`` stored once.

Inside an episode, ``("next", K)`` of a row is ``K`` of the following row
(the reader gathers it with the row itself). At the episode's last step it is
the final value stored in the shard's ``final/`` directory: ``final/<row>``
lists the shard's local rows that have one and ``final/<K>`` their values.
An episode without a stored final value gets zeros.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..format import (
    FINAL_ROW,
    Column,
    FormatError,
    Key,
    ShardInfo,
    column_path,
    open_column,
)
from .routing import gather, route

__all__ = ["FinalValues"]


class FinalValues:
    """The stored final values of the keys rebuilt from the following row, over every opened shard.

    Args:
        next_keys: the keys ``K`` whose ``("next", K)`` is rebuilt.
        columns: the columns of a shard's ``final/`` directory
            (:func:`torchrl_ext.format.final_columns`).
    """

    def __init__(self, next_keys: list[Key], columns: list[Column]) -> None:
        self.next_keys = next_keys
        self.columns = {c.key: c for c in columns}
        self.clear()

    def clear(self) -> None:
        """Forgets every opened shard."""
        self.values: dict[Key, list[np.ndarray]] = {k: [] for k in self.next_keys}
        self.row_parts: list[np.ndarray] = []
        self.rows = np.zeros(0, np.int64)
        self.offsets = np.zeros(1, np.int64)

    def open_shard(self, root: Path, d: Path, shard: ShardInfo, offset: int, slot: int | None = None) -> None:
        """Maps the ``final/`` files of shard directory ``d`` (of the dataset at ``root``) whose first global
        row is ``offset``.

        Raises:
            FormatError: when a listed row lies outside the shard, or a file outside ``root``.
        """
        rows = open_column(column_path(d / "final", FINAL_ROW), np.dtype(np.int64), (), shard.finals, root=root)
        local = np.asarray(rows)
        if local.size and (local.min() < 0 or local.max() >= shard.rows):
            raise FormatError(
                f"{d / 'final'}: final rows must lie in [0, {shard.rows}), found "
                f"[{local.min()}, {local.max()}]; the shard is corrupt, restore or rewrite it"
            )
        values = {}
        for key in self.next_keys:
            c = self.columns[key]
            values[key] = open_column(column_path(d / "final", key), c.dtype, c.shape, shard.finals, root=root)
        if slot is None:
            self.add_closed()
            slot = len(self.row_parts) - 1
        self.row_parts[slot] = local + offset
        for key in self.next_keys:
            self.values[key][slot] = values[key]

    def add_closed(self) -> None:
        """Appends a shard that is not open (yet): it has no final values until :meth:`open_shard` fills it."""
        self.row_parts.append(np.zeros(0, np.int64))
        for key in self.next_keys:
            self.values[key].append(np.zeros((0, *self.columns[key].shape), self.columns[key].dtype))

    def close_shard(self, slot: int) -> None:
        """Forgets the final values of shard ``slot`` (its files are no longer mapped)."""
        self.row_parts[slot] = np.zeros(0, np.int64)
        for key in self.next_keys:
            self.values[key][slot] = np.zeros((0, *self.columns[key].shape), self.columns[key].dtype)

    def build_lookup(self) -> None:
        """Indexes the final values of the shards opened so far (closed shards have none)."""
        fsizes = np.asarray([p.shape[0] for p in self.row_parts], dtype=np.int64)
        self.offsets = np.concatenate(([0], np.cumsum(fsizes))).astype(np.int64)
        self.rows = np.concatenate(self.row_parts) if self.row_parts else np.zeros(0, np.int64)

    def fill_last(self, col: Column, flat: np.ndarray, last: np.ndarray, nxt: np.ndarray) -> None:
        """Sets ``nxt[i]`` where ``last[i]`` (row ``flat[i]`` ends its episode) to the row's final value, else zeros."""
        pos = np.flatnonzero(last)
        rows = flat[pos]
        has = np.zeros(rows.shape, dtype=bool)
        f = np.searchsorted(self.rows, rows)
        if self.rows.size:
            has = self.rows[np.minimum(f, self.rows.size - 1)] == rows
        nxt[pos[~has]] = 0
        if has.any():
            fr = route(self.offsets, f[has])
            vals = np.empty((int(has.sum()), *col.shape), dtype=col.dtype)
            gather(self.values[col.key], fr, vals)
            nxt[pos[has]] = vals
