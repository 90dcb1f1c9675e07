"""The episode table: one SQLite row per complete episode.

Columns ``episode`` (id = position in the dataset), ``first_row`` (global row
of its first step), ``length``, ``has_final`` (1 when a final observation is
stored) plus metadata columns added on first use (INTEGER, REAL or TEXT).
SQLite keeps the table queryable with plain SQL for metadata filters, e.g.
``EpisodeTable.open(root).select("game = 'pong' AND score > 10")``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FormatError

__all__ = ["EpisodeTable", "FIXED_COLUMNS", "MetadataTypes", "check_metadata_name", "sql_type", "MAX_NAME_CHARS"]

FIXED_COLUMNS = ("episode", "first_row", "length", "has_final")


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


class EpisodeTable:
    """Reads and writes the SQLite episode table of a dataset."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn

    @classmethod
    def open(cls, path: str | Path, *, create: bool = False) -> EpisodeTable:
        path = Path(path)
        if not create and not path.is_file():
            raise FileNotFoundError(f"{path}: episode table is missing; the dataset is incomplete")
        uri = f"file:{path}" + ("" if create else "?mode=ro")
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as err:
            conn.close()
            raise FormatError(
                f"{path}: the episode table is not an SQLite database ({err}); restore it from a "
                "copy or rewrite the dataset"
            ) from err
        if create:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS episodes (episode INTEGER PRIMARY KEY, "
                "first_row INTEGER NOT NULL, length INTEGER NOT NULL, has_final INTEGER NOT NULL)"
            )
            conn.commit()
        return cls(path, conn)

    def close(self) -> None:
        self._conn.close()

    def metadata_columns(self) -> dict[str, str]:
        rows = self._conn.execute("PRAGMA table_info(episodes)").fetchall()
        return {r[1]: r[2] for r in rows if r[1] not in FIXED_COLUMNS}

    def insert(self, rows: Iterable[tuple[int, int, int, bool, Mapping[str, Any]]]) -> None:
        """Inserts (episode, first_row, length, has_final, metadata) rows in one transaction."""
        rows = list(rows)
        known = self.metadata_columns()
        with self._conn:
            for _, _, _, _, meta in rows:
                for name, value in meta.items():
                    if name in known:
                        continue
                    check_metadata_name(name, FIXED_COLUMNS)
                    column_type = sql_type(value)
                    if column_type is None:
                        raise TypeError(f"episode metadata `{name}` must be an int, float or str, got {type(value).__name__}")
                    self._conn.execute(f'ALTER TABLE episodes ADD COLUMN "{name}" {column_type}')
                    known[name] = column_type
            for ep, first, length, has_final, meta in rows:
                names = ["episode", "first_row", "length", "has_final", *meta]
                values = [ep, first, length, int(has_final), *(_plain(v) for v in meta.values())]
                cols = ", ".join(f'"{n}"' for n in names)
                marks = ", ".join("?" * len(names))
                self._conn.execute(
                    f"INSERT OR REPLACE INTO episodes ({cols}) VALUES ({marks})", values
                )

    def copy_to(self, path: Path, num_episodes: int, *, has_final: Iterable[int] = ()) -> None:
        """Writes a copy with the first ``num_episodes`` episodes; marks ``has_final`` episodes."""
        Path(path).unlink(missing_ok=True)
        out = sqlite3.connect(path)
        try:
            self._conn.backup(out)
            with out:
                out.execute("DELETE FROM episodes WHERE episode >= ?", (num_episodes,))
                out.executemany("UPDATE episodes SET has_final = 1 WHERE episode = ?",
                                [(int(e),) for e in has_final])
        finally:
            out.close()

    def content_crc(self, num_episodes: int) -> str:
        """Checksum of the content of the first ``num_episodes`` rows (every column, by name).

        It depends on values only, not on SQLite's page layout, so a table rewritten
        with the same rows keeps it.
        """
        import json
        import zlib

        names = sorted(r[1] for r in self._conn.execute("PRAGMA table_info(episodes)").fetchall())
        cols = ", ".join(f'"{n}"' for n in names)
        crc = zlib.crc32(json.dumps(names).encode("utf-8"))
        cur = self._conn.execute(f"SELECT {cols} FROM episodes WHERE episode < ? ORDER BY episode",
                                 (num_episodes,))
        while rows := cur.fetchmany(4096):
            crc = zlib.crc32(json.dumps(rows).encode("utf-8"), crc)
        return f"crc32:{crc:08x}"

    def delete_from(self, episode: int) -> None:
        """Deletes rows of episodes ``>= episode`` (uncommitted leftovers)."""
        with self._conn:
            self._conn.execute("DELETE FROM episodes WHERE episode >= ?", (episode,))

    def bounds(self, num_episodes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Returns ``first_row``, ``length`` and ``has_final`` arrays of the first episodes."""
        try:
            rows = self._conn.execute(
                "SELECT first_row, length, has_final FROM episodes WHERE episode < ? ORDER BY episode",
                (num_episodes,),
            ).fetchall()
        except sqlite3.DatabaseError as err:
            raise FormatError(
                f"{self.path}: the episode table cannot be read ({err}); restore it or rewrite the dataset"
            ) from err
        if len(rows) != num_episodes:
            raise FormatError(
                f"{self.path}: expected {num_episodes} episodes, found {len(rows)}; "
                "the episode table does not match the manifest"
            )
        arr = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
        return arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].astype(bool)

    def select(self, where: str | None = None, params: tuple = (), *, num_episodes: int | None = None) -> np.ndarray:
        """Episode ids matching an SQL ``WHERE`` clause over the metadata columns."""
        sql = "SELECT episode FROM episodes"
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
            rows = self._conn.execute(sql + " ORDER BY episode", args).fetchall()
        except sqlite3.Error as err:
            raise ValueError(
                f"episode filter {where!r} is not valid SQL over columns "
                f"{list(FIXED_COLUMNS) + list(self.metadata_columns())}: {err}"
            ) from err
        return np.asarray([r[0] for r in rows], dtype=np.int64)

    def values(self, columns: Iterable[str], episodes: Iterable[int] | None = None, *,
               num_episodes: int | None = None) -> list[tuple]:
        """Rows of ``columns`` (quoted names) for ``episodes`` (default: all), in episode order."""
        columns = list(columns)
        known = set(FIXED_COLUMNS) | set(self.metadata_columns())
        unknown = [c for c in columns if c not in known]
        if unknown:
            raise ValueError(f"episode table has no column(s) {unknown}; columns are {sorted(known)}")
        cols = ", ".join(f'"{c}"' for c in columns)
        sql, args = f"SELECT episode, {cols} FROM episodes", []
        if num_episodes is not None:
            sql, args = sql + " WHERE episode < ?", [num_episodes]
        rows = self._conn.execute(sql + " ORDER BY episode", args).fetchall()
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
        with self._conn:
            if name not in known:
                self._conn.execute(f'ALTER TABLE episodes ADD COLUMN "{name}" {kind}')
            self._conn.execute(f'UPDATE episodes SET "{name}" = NULL')
            self._conn.executemany(f'UPDATE episodes SET "{name}" = ? WHERE episode = ?',
                                   [(_plain(v), int(e)) for e, v in values.items()])
        return known.get(name, kind)

    def row(self, episode: int) -> dict[str, Any]:
        """Every column of one episode: ``episode``, ``first_row``, ``length``, ``has_final`` and metadata."""
        cur = self._conn.execute("SELECT * FROM episodes WHERE episode = ?", (episode,))
        row = cur.fetchone()
        if row is None:
            raise IndexError(f"episode {episode} is not in {self.path}")
        return {d[0]: v for d, v in zip(cur.description, row)}

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


MAX_NAME_CHARS = 128


def check_metadata_name(name: Any, reserved: Sequence[str]) -> None:
    """A metadata key is any short str without ``"`` or NUL (``"Active playtime"``, ``env:game``)."""
    if (not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS or '"' in name
            or "\x00" in name or name.lower() in {r.lower() for r in reserved}):
        raise ValueError(
            f"episode metadata key {name!r} must be a str of 1 to {MAX_NAME_CHARS} characters without "
            f"'\"' or NUL, other than {tuple(reserved)}; rename it"
        )


def sql_type(value: Any) -> str | None:
    """SQLite type of a metadata value (None: not storable)."""
    if isinstance(value, (bool, np.bool_, int, np.integer)):
        return "INTEGER"
    if isinstance(value, (float, np.floating)):
        return "REAL"
    if isinstance(value, str):
        return "TEXT"
    return None


class MetadataTypes:
    """The SQL type of every metadata key so far; checks a new episode's metadata against it.

    Args:
        known: ``{name: "INTEGER" | "REAL" | "TEXT"}`` of the table's existing columns.
        reserved: names the table uses itself.
    """

    def __init__(self, known: Mapping[str, str], reserved: Sequence[str]) -> None:
        self.types = dict(known)
        self.reserved = tuple(reserved)

    def check(self, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
        """Returns the metadata as plain Python values, or raises before anything is recorded."""
        out: dict[str, Any] = {}
        new: dict[str, str] = {}
        for name, value in (metadata or {}).items():
            check_metadata_name(name, self.reserved)
            sql = sql_type(value)
            if sql is None:
                raise TypeError(
                    f"episode metadata `{name}` must be an int, float or str, got "
                    f"{type(value).__name__}; store lists as a str (e.g. ','.join) or one key per item"
                )
            known = self.types.get(name)
            if known is not None and known != sql and not (known == "REAL" and sql == "INTEGER"):
                raise TypeError(
                    f"episode metadata `{name}` is {sql.lower()} here but {known.lower()} in earlier "
                    f"episodes; keep one type per key (e.g. float for every episode)"
                )
            new.setdefault(name, known or sql)
            out[name] = value.item() if isinstance(value, np.generic) else value
        self.types.update(new)
        return out
