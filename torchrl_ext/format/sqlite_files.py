"""SQLite files written by someone else: opened by a quoted URI, every query on a bounded budget.

A dataset's episode table (and a CrowdPlay ``dataset.sqlite``) arrives from
elsewhere, so the file is data, never code:

* The path becomes a ``file:`` URI through :meth:`pathlib.Path.as_uri`, which
  percent-encodes ``#``, ``?``, ``%`` and spaces; ``mode=ro`` (read-only) or
  ``mode=rw`` / ``rwc`` is the only query parameter. A path is never pasted
  into a URI unquoted.
* The first 100 bytes must be an SQLite header (``SQLite format 3\\0``) of a
  rollback-journal database (bytes 18 and 19 equal to 1): a WAL database
  would make a reader create ``-shm``/``-wal`` files beside it.
* ``PRAGMA trusted_schema = OFF`` (no side-effecting SQL functions in views,
  triggers or schema expressions), no ``ATTACH``, strings and BLOBs of at most
  :data:`MAX_VALUE_BYTES`, ``query_only`` on read-only connections.
* A progress handler stops any statement (and each batch of rows fetched)
  that runs past :data:`QUERY_SECONDS`: no file can hang a reader. The stop
  becomes one :class:`FormatError` line naming the file.
* Identifiers are quoted by :func:`quote_name` only, everywhere.

What the episode table itself must look like is checked in
:mod:`.episode_schema`.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import FormatError
from .files import open_regular

__all__ = ["QUERY_SECONDS", "MAX_VALUE_BYTES", "SQLITE_MAGIC", "SQLiteFile", "check_header", "quote_name", "sqlite_uri"]

QUERY_SECONDS = 60.0  # per statement, and per batch of fetched rows
MAX_VALUE_BYTES = 64 << 20  # SQLITE_LIMIT_LENGTH: a string, BLOB or row
SQLITE_MAGIC = b"SQLite format 3\x00"
PROGRESS_STEPS = 10_000  # VM instructions between two looks at the clock
HEADER_BYTES = 100


def quote_name(name: str) -> str:
    """``name`` as an SQL identifier: double quotes around it, inner ``"`` doubled.

    The one place identifiers are quoted (filters, checksum, ALTER TABLE, SELECT).

    Example:
        >>> quote_name('score" OR 1=1 OR "score')
        '"score"" OR 1=1 OR ""score"'
    """
    if not isinstance(name, str) or "\x00" in name:
        raise ValueError(f"an SQL name must be a str without NUL, got {name!r}")
    return '"' + name.replace('"', '""') + '"'


def sqlite_uri(path: str | os.PathLike, mode: str) -> str:
    """The ``file:`` URI of ``path`` (made absolute, percent-encoded) with ``?mode=<mode>``.

    Example:
        >>> sqlite_uri("/data/a#b?c%41 d/episodes.sqlite", "ro")
        'file:///data/a%23b%3Fc%2541%20d/episodes.sqlite?mode=ro'
    """
    if mode not in ("ro", "rw", "rwc"):
        raise ValueError(f"`mode` must be 'ro', 'rw' or 'rwc', got {mode!r}")
    return Path(os.path.abspath(path)).as_uri() + f"?mode={mode}"


def check_header(path: Path, kind: str = "the file") -> None:
    """Refuses a file that is not a rollback-journal SQLite database (an empty file passes)."""
    with open_regular(path) as f:  # a FIFO, device or directory is refused before a read could block
        head = f.read(HEADER_BYTES)
    if not head:
        return
    if len(head) < HEADER_BYTES or head[:16] != SQLITE_MAGIC:
        raise FormatError(f"{path}: {kind} is not an SQLite database (expected the header {SQLITE_MAGIC!r}, found "
                          f"{head[:16]!r}); restore the file from a copy")
    if head[18] != 1 or head[19] != 1:
        raise FormatError(f"{path}: expected {kind} in rollback-journal mode (header bytes 18-19 = 1, 1), found "
                          f"{head[18]}, {head[19]} (2 is WAL); run `PRAGMA journal_mode=DELETE` on a copy")


class SQLiteFile:
    """One connection to an SQLite file, every statement on a time budget.

    Use :meth:`open`. Statements run through :meth:`query`, :meth:`batches`,
    :meth:`execute` and :meth:`executemany`; the connection is not handed out.

    Args:
        path: the file.
        conn: its connection (opened by :meth:`open`).
        query_seconds: how long one statement, or one batch of rows, may run.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, query_seconds: float) -> None:
        self.path = path
        self.query_seconds = query_seconds
        self._conn = conn
        self._deadline: float | None = None
        self._stopped = False
        conn.set_progress_handler(self._progress, PROGRESS_STEPS)
        conn.text_factory = self._text

    def _text(self, data: bytes) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise FormatError(f"{self.path}: expected UTF-8 text, found {data[:40]!r}; restore the file") from err

    @classmethod
    def open(cls, path: str | os.PathLike, *, writable: bool = False, create: bool = False,
             query_seconds: float = QUERY_SECONDS, kind: str = "the file") -> SQLiteFile:
        """Opens ``path`` (read-only unless ``writable``; ``create`` makes a missing file).

        ``kind`` names the file in messages (``"the episode table"``).

        Raises:
            FormatError: not a regular SQLite file, or SQLite cannot open it.
        """
        path = Path(path)
        if not (isinstance(query_seconds, (int, float)) and query_seconds > 0):
            raise ValueError(f"`query_seconds` must be a positive number, got {query_seconds!r}")
        if not (create and not os.path.lexists(path)):
            check_header(path, kind)
        mode = "rwc" if create else "rw" if writable else "ro"
        try:
            conn = sqlite3.connect(sqlite_uri(path, mode), uri=True, check_same_thread=False)
        except sqlite3.Error as err:
            raise FormatError(f"{path}: SQLite cannot open {kind} ({err}); restore the file") from err
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
        db = cls(path, conn, float(query_seconds))
        try:
            db.execute("PRAGMA trusted_schema = OFF", what="opening")  # SQLite opens the file lazily, here
            if mode == "ro":
                db.execute("PRAGMA query_only = ON", what="opening")
        except sqlite3.Error as err:
            conn.close()
            raise FormatError(f"{path}: SQLite cannot open {kind} ({err}); restore the file") from err
        except BaseException:
            conn.close()
            raise
        return db

    def _progress(self) -> int:
        if self._deadline is not None and time.monotonic() > self._deadline:
            self._stopped = True
            return 1  # SQLite stops the statement: OperationalError("interrupted")
        return 0

    @contextmanager
    def budget(self, what: str) -> Iterator[None]:
        """Runs the statements inside on one time budget; a stop or a damaged file is a ``FormatError``."""
        self._deadline, self._stopped = time.monotonic() + self.query_seconds, False
        try:
            yield
        except sqlite3.OperationalError as err:
            if self._stopped:
                raise FormatError(
                    f"{self.path}: {what} ran past its {self.query_seconds:g} s budget and was stopped; expected "
                    "a file that answers promptly, rebuild or re-download it"
                ) from err
            raise
        except (sqlite3.DataError, sqlite3.NotSupportedError) as err:
            raise FormatError(f"{self.path}: {what} failed ({err}); the file holds what this reader refuses") from err
        except sqlite3.DatabaseError as err:
            if type(err) is not sqlite3.DatabaseError:  # IntegrityError, ProgrammingError...: the caller's
                raise
            raise FormatError(f"{self.path}: {what} failed, the file is damaged ({err}); restore it") from err
        finally:
            self._deadline = None

    def query(self, sql: str, args: Sequence[Any] = (), *, what: str = "a query") -> list[tuple]:
        """Every row of one statement, on one budget."""
        with self.budget(what):
            return self._conn.execute(sql, tuple(args)).fetchall()

    def batches(self, sql: str, args: Sequence[Any] = (), *, size: int = 4096,
                what: str = "a query") -> Iterator[list[tuple]]:
        """The rows of one statement, ``size`` at a time; each batch on a budget of its own."""
        with self.budget(what):
            cur = self._conn.execute(sql, tuple(args))
        while True:
            with self.budget(what):
                rows = cur.fetchmany(size)
            if not rows:
                return
            yield rows

    def execute(self, sql: str, args: Sequence[Any] = (), *, what: str = "a statement") -> None:
        """Runs one statement that returns nothing (DDL, INSERT, UPDATE, DELETE, PRAGMA)."""
        with self.budget(what):
            self._conn.execute(sql, tuple(args)).fetchall()

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]], *, what: str = "a statement") -> None:
        with self.budget(what):
            self._conn.executemany(sql, rows)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Commits the statements inside (``ALTER TABLE`` included) together, or none of them."""
        self.execute("BEGIN", what="starting a transaction")
        try:
            yield
        except BaseException:
            self._conn.rollback()
            raise
        with self.budget("committing"):
            self._conn.commit()

    def backup_to(self, out: SQLiteFile) -> None:
        """Copies this database into ``out`` page by page."""
        with self.budget("a backup"):
            self._conn.backup(out._conn)

    def close(self) -> None:
        self._conn.close()
