"""The episode table: one SQLite row per complete episode.

Columns ``episode`` (id = position in the dataset, the ``INTEGER PRIMARY
KEY``), ``first_row`` (global row of its first step), ``length``,
``has_final`` (1 when a final observation is stored) plus metadata columns
added on first use (INTEGER, REAL or TEXT). SQLite keeps the table queryable
with plain SQL for metadata filters, e.g.
``EpisodeTable.open(root).select("game = 'pong' AND score > 10")``.

The file may come from elsewhere, so it is data, never code. Before any query
touches the table, :func:`.episode_schema.read_episode_schema` checks it (one
real table, no views or triggers, the fixed columns and their types, names
from an allowed alphabet and unique ignoring case, a bounded number of
columns); the file is opened read-only through a quoted ``file:`` URI and every
statement runs on a time budget (:mod:`.sqlite_files`); identifiers are quoted
by :func:`.sqlite_files.quote_name` only. :meth:`EpisodeTable.from_dataset`
also requires the table to resolve inside the dataset's root. The rows read
for a dataset (:meth:`EpisodeTable.bounds`) must number its episodes ``0..n-1``
with integer, back-to-back row ranges.
"""

from __future__ import annotations

import json
import os
import sqlite3
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..validation import user_path
from .episode_schema import (
    CREATE_SQL,
    FIXED_COLUMNS,
    MAX_METADATA_COLUMNS,
    MAX_NAME_CHARS,
    TABLE,
    MetadataTypes,
    check_metadata_name,
    read_episode_schema,
    sql_type,
)
from .columns import MAX_ROWS
from .errors import FormatError
from .files import resolve_inside
from .sqlite_files import QUERY_SECONDS, SQLiteFile, quote_name

__all__ = ["EpisodeTable", "FIXED_COLUMNS", "MetadataTypes", "check_metadata_name", "sql_type", "MAX_NAME_CHARS"]

SIDE_FILES = ("-journal", "-wal", "-shm")  # SQLite's files beside the table


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


class EpisodeTable:
    """Reads and writes the SQLite episode table of a dataset.

    Use :meth:`from_dataset` (a dataset's table) or :meth:`open` (a file).

    Args:
        path: the table file.
        db: its open, checked :class:`~.sqlite_files.SQLiteFile`.
    """

    def __init__(self, path: Path, db: SQLiteFile) -> None:
        self.path = path
        self._db = db
        self._schema_version: int | None = None  # SQLite's schema cookie when the schema was last checked
        self._metadata: dict[str, str] = {}

    @classmethod
    def open(cls, path: str | os.PathLike, *, create: bool = False,
             query_seconds: float = QUERY_SECONDS) -> EpisodeTable:
        """Opens the table file ``path`` (read-only unless ``create``, which also makes it when missing).

        Raises:
            FileNotFoundError: no file at ``path`` (and not ``create``).
            FormatError: the file is not an episode table this reader trusts.
        """
        path = user_path(path, "path")
        if not create and not os.path.lexists(path):
            raise FileNotFoundError(f"{path}: episode table is missing; the dataset is incomplete")
        db = SQLiteFile.open(path, writable=create, create=create, query_seconds=query_seconds,
                             kind="the episode table")
        table = cls(path, db)
        try:
            if create and not db.query("SELECT count(*) FROM sqlite_master", what="reading the schema")[0][0]:
                with db.transaction():
                    db.execute(CREATE_SQL, what="creating the table")
            table.metadata_columns()  # the schema checked before any query touches the table
        except BaseException:
            db.close()
            raise
        return table

    @classmethod
    def from_dataset(cls, root: str | os.PathLike, rel: str, *, create: bool = False,
                     query_seconds: float = QUERY_SECONDS) -> EpisodeTable:
        """Opens the table ``rel`` (the manifest's ``episodes``) of the dataset at ``root``.

        The table, symlinks followed, must lie inside ``root``, and SQLite's
        files beside it (``-journal``, ``-wal``, ``-shm``) must not be symlinks.

        Raises:
            FormatError: a path outside the root, or a table :meth:`open` refuses.
        """
        root = user_path(root, "root")
        path = resolve_inside(root, rel, str(root / "dataset.json"))
        for suffix in SIDE_FILES:
            side = Path(f"{path}{suffix}")
            if side.is_symlink():
                raise FormatError(f"{side}: expected no link beside the episode table, found a symlink to "
                                  f"{os.readlink(side)!r}; delete it")
        return cls.open(path, create=create, query_seconds=query_seconds)

    def close(self) -> None:
        self._db.close()

    def metadata_columns(self) -> dict[str, str]:
        """``{name: "INTEGER" | "REAL" | "TEXT"}`` of the metadata columns.

        The schema is checked again whenever SQLite's schema cookie says it changed.
        """
        version = self._db.query("PRAGMA schema_version", what="reading the schema")[0][0]
        if version != self._schema_version:
            self._metadata = read_episode_schema(self._db)
            self._schema_version = version
        return dict(self._metadata)

    def insert(self, rows: Iterable[tuple[int, int, int, bool, Mapping[str, Any]]]) -> None:
        """Inserts (episode, first_row, length, has_final, metadata) rows in one transaction.

        Metadata is checked like :class:`MetadataTypes` checks it before anything changes.
        """
        rows = list(rows)
        known = self.metadata_columns()
        types = MetadataTypes(known, FIXED_COLUMNS)
        metas = [types.check(meta) for *_, meta in rows]
        with self._db.transaction():
            for name, kind in types.types.items():
                if name not in known:
                    self._db.execute(f"ALTER TABLE {TABLE} ADD COLUMN {quote_name(name)} {kind}",
                                     what="adding a metadata column")
            for (ep, first, length, has_final, _), meta in zip(rows, metas):
                names = [*FIXED_COLUMNS, *meta]
                values = [int(ep), int(first), int(length), int(has_final), *meta.values()]
                cols = ", ".join(quote_name(n) for n in names)
                self._db.execute(f"INSERT OR REPLACE INTO {TABLE} ({cols}) VALUES ({', '.join('?' * len(names))})",
                                 values, what="inserting episodes")

    def copy_to(self, path: Path, num_episodes: int, *, has_final: Iterable[int] = ()) -> None:
        """Writes a copy with the first ``num_episodes`` episodes; marks ``has_final`` episodes."""
        Path(path).unlink(missing_ok=True)
        out = SQLiteFile.open(path, create=True, query_seconds=self._db.query_seconds, kind="the episode table")
        try:
            self._db.backup_to(out)
            with out.transaction():
                out.execute(f"DELETE FROM {TABLE} WHERE episode >= ?", (num_episodes,), what="cutting the copy")
                out.executemany(f"UPDATE {TABLE} SET has_final = 1 WHERE episode = ?",
                                [(int(e),) for e in has_final], what="marking final values")
        finally:
            out.close()

    def content_crc(self, num_episodes: int) -> str:
        """Checksum of the content of the first ``num_episodes`` rows (every column, by name).

        It depends on values only, not on SQLite's page layout, so a table rewritten
        with the same rows keeps it.
        """
        names = sorted([*FIXED_COLUMNS, *self.metadata_columns()])
        cols = ", ".join(quote_name(n) for n in names)
        crc = zlib.crc32(json.dumps(names).encode("utf-8"))
        for rows in self._db.batches(f"SELECT {cols} FROM {TABLE} WHERE episode < ? ORDER BY episode",
                                     (num_episodes,), what="the content checksum"):
            try:
                crc = zlib.crc32(json.dumps(rows).encode("utf-8"), crc)
            except (TypeError, ValueError) as err:
                raise FormatError(f"{self.path}: expected int, float, text or NULL values, found another kind "
                                  f"({err}); restore the episode table") from err
        return f"crc32:{crc:08x}"

    def delete_from(self, episode: int) -> None:
        """Deletes rows of episodes ``>= episode`` (uncommitted leftovers)."""
        with self._db.transaction():
            self._db.execute(f"DELETE FROM {TABLE} WHERE episode >= ?", (episode,), what="dropping leftovers")

    def bounds(self, num_episodes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Returns ``first_row``, ``length`` and ``has_final`` arrays of the first episodes.

        Raises:
            FormatError: ids other than ``0..num_episodes-1``, values that are not
                integers, or row ranges that are not back to back.
        """
        try:
            rows = self._db.query(f"SELECT episode, first_row, length, has_final FROM {TABLE} WHERE episode < ? "
                                  "ORDER BY episode", (num_episodes,), what="reading episode bounds")
            odd = self._db.query(f"SELECT count(*) FROM {TABLE} WHERE episode < ? AND NOT (typeof(first_row) = "
                                 "'integer' AND typeof(length) = 'integer' AND typeof(has_final) = 'integer')",
                                 (num_episodes,), what="reading episode bounds")[0][0]
        except sqlite3.Error as err:
            raise FormatError(
                f"{self.path}: the episode table cannot be read ({err}); restore it or rewrite the dataset"
            ) from err
        if len(rows) != num_episodes:
            raise FormatError(
                f"{self.path}: expected {num_episodes} episodes, found {len(rows)}; "
                "the episode table does not match the manifest"
            )
        if odd:
            raise FormatError(f"{self.path}: expected integer first_row, length and has_final, found {odd} "
                              "episode(s) with other values; restore the episode table")
        try:
            arr = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
        except OverflowError as err:
            raise FormatError(f"{self.path}: expected 64-bit integers, found larger ones ({err}); "
                              "restore the episode table") from err
        ids, first, length, final = arr.T
        ok = (length >= 1) & (length <= MAX_ROWS)
        starts = np.concatenate(([0], np.cumsum(np.where(ok, length, 0))[:-1]))  # no overflow: each < 2**48
        bad = np.flatnonzero((ids != np.arange(num_episodes)) | ~ok | (final < 0) | (final > 1) | (first != starts))
        if bad.size:
            e = int(bad[0])
            raise FormatError(
                f"{self.path}: expected episode {e} with id {e}, first_row {int(starts[e])}, length in [1, 2**48] "
                f"and has_final 0/1, found {arr[e].tolist()}; the episode table does not describe the shards"
            )
        return first.copy(), length.copy(), final.astype(bool)

    def select(self, where: str | None = None, params: tuple = (), *, num_episodes: int | None = None) -> np.ndarray:
        """Episode ids matching an SQL ``WHERE`` clause over the metadata columns."""
        sql = f"SELECT episode FROM {TABLE}"
        clauses, args = [], []
        if where:
            clauses.append(f"({where})")
            args.extend(params)
        if num_episodes is not None:
            clauses.append("episode < ?")
            args.append(num_episodes)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        try:
            rows = self._db.query(sql + " ORDER BY episode", args, what=f"the episode filter {where!r}")
        except sqlite3.Error as err:
            raise ValueError(
                f"episode filter {where!r} is not valid SQL over columns "
                f"{list(FIXED_COLUMNS) + list(self.metadata_columns())}: {err}"
            ) from err
        return np.asarray([r[0] for r in rows], dtype=np.int64)

    def values(self, columns: Iterable[str], episodes: Iterable[int] | None = None, *,
               num_episodes: int | None = None) -> list[tuple]:
        """Rows of ``columns`` (names as the table spells them) for ``episodes`` (default: all), in episode order."""
        columns = list(columns)
        known = set(FIXED_COLUMNS) | set(self.metadata_columns())
        unknown = [c for c in columns if c not in known]
        if unknown:
            raise ValueError(f"episode table has no column(s) {unknown}; columns are {sorted(known)}")
        cols = ", ".join(quote_name(c) for c in columns)
        sql, args = f"SELECT episode, {cols} FROM {TABLE}", []
        if num_episodes is not None:
            sql, args = sql + " WHERE episode < ?", [num_episodes]
        rows = self._db.query(sql + " ORDER BY episode", args, what="reading metadata")
        if episodes is None:
            return [r[1:] for r in rows]
        by_id = {r[0]: r[1:] for r in rows}
        return [by_id[int(e)] for e in episodes]

    def set_column(self, name: str, values: Mapping[int, Any]) -> str:
        """Adds (or overwrites) metadata column ``name`` with ``{episode: value}``; returns its SQL type."""
        check_metadata_name(name, FIXED_COLUMNS)
        present = [v for v in values.values() if v is not None]
        types = {sql_type(v) for v in present}
        if None in types:
            bad = next(v for v in present if sql_type(v) is None)
            raise TypeError(f"episode metadata `{name}` must be int, float or str values, got {type(bad).__name__}")
        kind = "TEXT" if "TEXT" in types else "REAL" if "REAL" in types else "INTEGER"
        if "TEXT" in types and len(types) > 1:
            raise TypeError(f"episode metadata `{name}` mixes text and numbers; return one type for every episode")
        known = self.metadata_columns()
        spelled = {k.lower(): k for k in known}.get(name.lower(), name)
        if spelled != name:
            raise ValueError(f"episode metadata `{name}` would clash with column `{spelled}` (SQL names ignore "
                             "case); choose another name")
        if name not in known and len(known) >= MAX_METADATA_COLUMNS:
            raise ValueError(f"the episode table has {len(known)} metadata columns, at most {MAX_METADATA_COLUMNS} "
                             "are allowed; store related values in one str column (e.g. JSON)")
        column = quote_name(name)
        with self._db.transaction():
            if name not in known:
                self._db.execute(f"ALTER TABLE {TABLE} ADD COLUMN {column} {kind}", what="adding a metadata column")
            self._db.execute(f"UPDATE {TABLE} SET {column} = NULL", what="clearing a metadata column")
            self._db.executemany(f"UPDATE {TABLE} SET {column} = ? WHERE episode = ?",
                                 [(_plain(v), int(e)) for e, v in values.items()], what="setting a metadata column")
        return known.get(name, kind)

    def row(self, episode: int) -> dict[str, Any]:
        """Every column of one episode: ``episode``, ``first_row``, ``length``, ``has_final`` and metadata."""
        names = [*FIXED_COLUMNS, *self.metadata_columns()]
        found = self._db.query(f"SELECT {', '.join(quote_name(n) for n in names)} FROM {TABLE} WHERE episode = ?",
                               (episode,), what="reading an episode")
        if not found:
            raise IndexError(f"episode {episode} is not in {self.path}")
        return dict(zip(names, found[0]))

    def metadata(self, episode: int) -> dict[str, Any]:
        """The metadata the writer was given for one episode (no internal columns)."""
        return {k: v for k, v in self.row(episode).items() if k not in FIXED_COLUMNS}

    def rows(self, where: str | None = None, params: tuple = (), *,
             num_episodes: int | None = None) -> list[dict[str, Any]]:
        """The rows matching an SQL ``WHERE`` clause, as dicts (``episode`` id, ``length``, metadata).

        Example:
            >>> from torchrl_ext import ShardedStorage
            >>> from torchrl_ext.synthetic import write_synthetic
            >>> import tempfile
            >>> root = write_synthetic(tempfile.mkdtemp() + "/ds", episodes=4, length=3, obs_shape=(1,))
            >>> [(r["episode"], r["game"], r["score"]) for r in ShardedStorage(root).episode_table().rows("score > 1")]
            [(2, 'pong', 2.0), (3, 'breakout', 3.0)]
        """
        ids = self.select(where, params, num_episodes=num_episodes)
        return [{k: v for k, v in self.row(int(e)).items() if k not in ("first_row", "has_final")}
                for e in ids]
