"""What the episode table must look like: its fixed columns, metadata names and types, the check of a file.

The writer and the reader agree on one set of rules, so the writer never
makes a table the reader refuses:

* The file holds one real ``table`` named ``episodes`` (``CREATE TABLE``, not
  virtual) and nothing else but SQLite's own ``sqlite_stat*`` tables: no
  views, triggers, indexes or other tables are relied on, or allowed.
* Its fixed columns :data:`FIXED_COLUMNS` are declared ``INTEGER``;
  ``episode`` is the ``INTEGER PRIMARY KEY``.
* At most :data:`MAX_METADATA_COLUMNS` metadata columns, declared
  ``INTEGER``, ``REAL`` or ``TEXT``, nullable, without a ``DEFAULT``; no
  hidden or generated columns.
* Every column name is 1 to :data:`MAX_NAME_CHARS` printable characters
  other than ``"`` (:func:`metadata_name_problem`), and names are unique
  ignoring case (SQL names ignore case: ``Score`` is ``score``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FormatError
from .sqlite_files import SQLiteFile, quote_name

__all__ = [
    "CREATE_SQL",
    "FIXED_COLUMNS",
    "MAX_NAME_CHARS",
    "MAX_METADATA_COLUMNS",
    "METADATA_SQL_TYPES",
    "TABLE",
    "MetadataTypes",
    "check_columns",
    "check_metadata_name",
    "metadata_name_problem",
    "read_episode_schema",
    "sql_type",
]

TABLE = "episodes"
FIXED_COLUMNS = ("episode", "first_row", "length", "has_final")
METADATA_SQL_TYPES = ("INTEGER", "REAL", "TEXT")
MAX_NAME_CHARS = 128
MAX_METADATA_COLUMNS = 1000
MAX_OBJECTS = 16  # rows of sqlite_master looked at; more is refused anyway
CREATE_SQL = (f"CREATE TABLE {TABLE} (episode INTEGER PRIMARY KEY, first_row INTEGER NOT NULL, "
              "length INTEGER NOT NULL, has_final INTEGER NOT NULL)")


def _shown(name: Any) -> str:
    text = repr(name)
    return text if len(text) <= 70 else text[:67] + "..."


def metadata_name_problem(name: Any) -> str | None:
    """Why ``name`` cannot be a column name (None: it can).

    Example:
        >>> metadata_name_problem("Active playtime"), metadata_name_problem("a\\nb")
        (None, 'has a non-printable character')
    """
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a str"
    if not name or len(name) > MAX_NAME_CHARS:
        return f"has {len(name)} characters"
    if '"' in name:
        return "contains '\"'"
    if not name.isprintable():
        return "has a non-printable character"
    return None


def check_metadata_name(name: Any, reserved: Sequence[str]) -> None:
    """A metadata key is 1 to 128 printable characters other than ``"`` (``"Active playtime"``, ``env:game``)."""
    problem = metadata_name_problem(name)
    if problem is None and name.lower() in {r.lower() for r in reserved}:
        problem = "is reserved"
    if problem is not None:
        raise ValueError(
            f"episode metadata key {_shown(name)} must be a str of 1 to {MAX_NAME_CHARS} characters without "
            f"'\"' or NUL (printable only), other than {tuple(reserved)}; it {problem}; rename it"
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
        spelled = {k.lower(): k for k in self.types}
        for name, value in (metadata or {}).items():
            check_metadata_name(name, self.reserved)
            sql = sql_type(value)
            if sql is None:
                raise TypeError(
                    f"episode metadata `{name}` must be an int, float or str, got "
                    f"{type(value).__name__}; store lists as a str (e.g. ','.join) or one key per item"
                )
            other = spelled.setdefault(name.lower(), name)
            if other != name:
                raise ValueError(
                    f"episode metadata `{name}` differs from `{other}` only in case, and SQL column names "
                    "ignore case; use one spelling for every episode"
                )
            known = self.types.get(name)
            if known is not None and known != sql and not (known == "REAL" and sql == "INTEGER"):
                raise TypeError(
                    f"episode metadata `{name}` is {sql.lower()} here but {known.lower()} in earlier "
                    f"episodes; keep one type per key (e.g. float for every episode)"
                )
            new.setdefault(name, known or sql)
            out[name] = value.item() if isinstance(value, np.generic) else value
        added = [n for n in new if n not in self.types]
        if len(self.types) + len(added) > MAX_METADATA_COLUMNS:
            raise ValueError(
                f"episode metadata would have {len(self.types) + len(added)} keys, at most "
                f"{MAX_METADATA_COLUMNS} are allowed; store related values in one str key (e.g. JSON)"
            )
        self.types.update(new)
        return out


def read_episode_schema(db: SQLiteFile) -> dict[str, str]:
    """Checks the episode table's schema in ``db`` before any query touches the table.

    Returns:
        ``{name: "INTEGER" | "REAL" | "TEXT"}`` of the metadata columns, in table order.

    Raises:
        FormatError: one line saying what was expected, what was found, and what to do.
    """
    try:
        objects = db.query("SELECT type, name, substr(sql, 1, 40) FROM sqlite_master LIMIT ?", (MAX_OBJECTS + 1,),
                           what="reading the schema")
        _check_objects(objects, db.path)
        columns = db.query(f"PRAGMA table_xinfo({quote_name(TABLE)})", what="reading the table's columns")
    except sqlite3.Error as err:
        raise FormatError(f"{db.path}: expected a readable SQLite schema, found an error ({err}); restore the "
                          "episode table") from err
    return check_columns(columns, db.path)


def _refuse(path: Path, expected: str, found: str) -> FormatError:
    return FormatError(f"{path}: expected {expected}, found {found}; rebuild the episode table with "
                       "torchrl_ext (ShardWriter) or restore the dataset from its source")


def _check_objects(objects: Sequence[tuple], path: Path) -> None:
    table = [o for o in objects if o[0] == "table" and str(o[1]).lower() == TABLE]
    if not table:
        views = [o for o in objects if str(o[1]).lower() == TABLE]
        found = f"a {views[0][0]} named {_shown(views[0][1])}" if views else "no such table"
        raise _refuse(path, f"a table `{TABLE}`", found)
    head = str(table[0][2] or "").lstrip().upper()
    if not head.startswith("CREATE TABLE"):
        raise _refuse(path, f"`{TABLE}` made by CREATE TABLE", f"{_shown(table[0][2])}")
    for kind, name, _ in objects:
        if (kind, name) == table[0][:2] or (kind == "table" and str(name).startswith("sqlite_stat")):
            continue
        raise _refuse(path, f"only the table `{TABLE}` (no views, triggers, indexes or other tables)",
                      f"{kind} {_shown(name)}")


def check_columns(columns: Iterable[tuple], path: Path) -> dict[str, str]:
    """Checks ``PRAGMA table_xinfo`` rows ``(cid, name, type, notnull, default, pk, hidden)``."""
    columns = list(columns)
    if len(columns) > len(FIXED_COLUMNS) + MAX_METADATA_COLUMNS:
        raise _refuse(path, f"at most {len(FIXED_COLUMNS) + MAX_METADATA_COLUMNS} columns", f"{len(columns)}")
    seen: dict[str, str] = {}
    fixed: dict[str, tuple] = {}
    meta: dict[str, str] = {}
    for _, name, kind, notnull, default, pk, hidden in columns:
        problem = metadata_name_problem(name)
        if problem is not None:
            raise _refuse(path, f'column names of 1 to {MAX_NAME_CHARS} printable characters other than \'"\'',
                          f"{_shown(name)}, which {problem}")
        other = seen.setdefault(name.lower(), name)
        if other != name or name in fixed or name in meta:
            raise _refuse(path, "column names unique ignoring case", f"{_shown(other)} and {_shown(name)}")
        if hidden:
            raise _refuse(path, "plain columns", f"a hidden or generated column {_shown(name)}")
        kind = str(kind).upper()
        if name.lower() in FIXED_COLUMNS:
            if name not in FIXED_COLUMNS or kind != "INTEGER":
                raise _refuse(path, f"column `{name.lower()}` declared INTEGER", f"{_shown(name)} {kind or 'untyped'}")
            fixed[name] = (pk, default)  # metadata columns that are keys are refused below
            continue
        if kind not in METADATA_SQL_TYPES or notnull or default is not None or pk:
            found = f"{kind or 'untyped'}{' NOT NULL' if notnull else ''}{' with a DEFAULT' if default else ''}"
            raise _refuse(path, f"metadata column {_shown(name)} declared one of {METADATA_SQL_TYPES}, nullable, "
                          "no DEFAULT, not a key", found + (" PRIMARY KEY" if pk else ""))
        meta[name] = kind
    missing = [c for c in FIXED_COLUMNS if c not in fixed]
    if missing:
        raise _refuse(path, f"the columns {list(FIXED_COLUMNS)}", f"{missing} missing")
    keys = [c for c, (pk, _) in fixed.items() if pk]
    if keys != ["episode"] or fixed["episode"][0] != 1:
        raise _refuse(path, "`episode` as the INTEGER PRIMARY KEY", f"primary key {keys or 'none'}")
    return meta
