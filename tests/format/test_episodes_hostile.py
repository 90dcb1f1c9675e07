"""Episode tables from elsewhere are data, never code: hostile ``episodes.sqlite`` files are refused, quickly.

Each hostile file is built with the standard library's ``sqlite3`` and put in
place of a clean dataset's table; the storage, the writer and ``verify()``
must each refuse it with one ``FormatError`` line naming the file, before any
query can run away.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import time

import numpy as np
import pytest

from torchrl_ext import FormatError, ShardedStorage, ShardWriter
from torchrl_ext.cli import main
from torchrl_ext.format import EpisodeTable, quote_name, where_clause
from torchrl_ext.synthetic import obs_value, write_synthetic

QUICK = 10.0  # seconds; a refused file returns in milliseconds, a hang never does
FIXED = ("episode INTEGER PRIMARY KEY, first_row INTEGER NOT NULL, length INTEGER NOT NULL, "
         "has_final INTEGER NOT NULL")
ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c) "
INJECTED = 'score" OR 1=1 OR "score'


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("clean") / "ds", episodes=4, length=3, obs_shape=(2,),
                           shard_rows=5)


@pytest.fixture
def root(tmp_path, clean):
    return shutil.copytree(clean, tmp_path / "ds")


def _rows(root):
    conn = sqlite3.connect(root / "episodes.sqlite")
    try:
        return conn.execute("SELECT episode, first_row, length, has_final FROM episodes ORDER BY episode").fetchall()
    finally:
        conn.close()


def _write_table(path, rows, *, columns="", create=None, after=(), insert=True):
    """A table file: ``create`` (default: the fixed columns plus ``columns``), the clean rows, then ``after``."""
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    try:
        conn.execute(create or f"CREATE TABLE episodes ({FIXED}{columns})")
        if insert:
            conn.executemany("INSERT INTO episodes (episode, first_row, length, has_final) VALUES (?, ?, ?, ?)",
                             rows)
        conn.commit()
        for sql in after:
            conn.execute(sql)
            conn.commit()
    finally:
        conn.close()


def _edit_schema(old, new):
    """Statements that rewrite the table's SQL in sqlite_master (what a hand-made file can hold)."""
    return ("PRAGMA writable_schema = ON",
            f"UPDATE sqlite_master SET sql = replace(sql, '{old}', '{new}') WHERE name = 'episodes'",
            "PRAGMA writable_schema = OFF")


# (id, keyword arguments of _write_table, message)
SCHEMA_CASES = [
    ("view_over_endless_cte",
     dict(create=f"CREATE VIEW episodes AS {ENDLESS}SELECT x AS episode, 0 AS first_row, 1 AS length, "
                 "0 AS has_final FROM c", insert=False),
     r"episodes\.sqlite: expected a table `episodes`, found a view named 'episodes'"),
    ("trigger",
     dict(after=["CREATE TRIGGER keep AFTER DELETE ON episodes BEGIN INSERT INTO episodes VALUES "
                 "(old.episode, old.first_row, old.length, old.has_final); END"]),
     r"episodes\.sqlite: expected only the table `episodes` \(no views, triggers, indexes or other tables\), "
     r"found trigger 'keep'"),
    ("view_beside_the_table",
     dict(after=[f"CREATE VIEW endless AS {ENDLESS}SELECT x FROM c"]), r"found view 'endless'"),
    ("index", dict(after=["CREATE INDEX by_length ON episodes (length)"]), r"found index 'by_length'"),
    ("virtual_table",
     dict(create="CREATE VIRTUAL TABLE episodes USING rtree(episode, first_row, length)", insert=False),
     r"expected `episodes` made by CREATE TABLE, found 'CREATE VIRTUAL TABLE"),
    ("quoted_column_name", dict(columns=', "a""b" TEXT'), r"""found 'a"b', which contains '"'"""),
    ("injection_column_name", dict(columns=f", {quote_name(INJECTED)} REAL"),
     r"""found 'score" OR 1=1 OR "score', which contains '"'"""),
    ("control_character_name", dict(columns=', "a\nb" TEXT'), r"found 'a\\nb', which has a non-printable"),
    ("case_duplicate_columns", dict(columns=', "Ärger" REAL, "ärger" REAL'),
     r"expected column names unique ignoring case, found 'Ärger' and 'ärger'"),
    ("case_duplicate_columns_by_schema_edit", dict(columns=', "Score" REAL, "Sc0re" REAL',
                                                   after=_edit_schema("Sc0re", "score")),
     r"episodes\.sqlite: .*(the file is damaged|unique ignoring case)"),
    ("first_row_text", dict(create=f"CREATE TABLE episodes ({FIXED.replace('first_row INTEGER', 'first_row TEXT')})"),
     r"expected column `first_row` declared INTEGER, found 'first_row' TEXT"),
    ("no_primary_key", dict(create=f"CREATE TABLE episodes ({FIXED.replace(' PRIMARY KEY', '')})"),
     r"expected `episode` as the INTEGER PRIMARY KEY, found primary key none"),
    ("missing_fixed_column",
     dict(create="CREATE TABLE episodes (episode INTEGER PRIMARY KEY, first_row INTEGER, length INTEGER)",
          insert=False),
     r"expected the columns \['episode', 'first_row', 'length', 'has_final'\], found \['has_final'\] missing"),
    ("too_many_columns", dict(columns="".join(f", m{i} REAL" for i in range(1001))),
     r"expected at most 1004 columns, found 1005"),
    ("generated_column", dict(columns=", twice INTEGER GENERATED ALWAYS AS (length * 2)"),
     r"expected plain columns, found a hidden or generated column 'twice'"),
    ("metadata_not_null_with_default", dict(columns=", game TEXT NOT NULL DEFAULT 'pong'"),
     r"expected metadata column 'game' declared one of .*nullable, no DEFAULT.*found TEXT NOT NULL with a DEFAULT"),
    ("blob_metadata_type", dict(columns=", payload BLOB"), r"metadata column 'payload' declared one of"),
    ("wal_mode", dict(after=["PRAGMA journal_mode = WAL"]),
     r"episodes\.sqlite: expected the episode table in rollback-journal mode .*found 2, 2"),
    ("not_sqlite", dict(create="not sqlite"), r"episodes\.sqlite: the episode table is not an SQLite database"),
]


def _hostile(root, rows, case):
    path = root / "episodes.sqlite"
    if case.get("create") == "not sqlite":
        path.write_bytes(b"not a database" * 100)
    else:
        _write_table(path, rows, **case)


def _open_storage(root):
    ShardedStorage(root)


def _open_writer(root):
    ShardWriter.open(root).close()


def _cli_info(root):
    code = main(["info", str(root)])
    assert code == 1


OPENERS = {"storage": _open_storage, "writer": _open_writer, "cli_info": _cli_info}


@pytest.mark.parametrize("opener", list(OPENERS))
@pytest.mark.parametrize("case, match", [(c[1], c[2]) for c in SCHEMA_CASES], ids=[c[0] for c in SCHEMA_CASES])
def test_hostile_table_is_refused_quickly(root, case, match, opener, capsys):
    _hostile(root, _rows(root), case)
    start = time.monotonic()
    if opener == "cli_info":
        OPENERS[opener](root)
        err = capsys.readouterr().err
        assert err.startswith("torchrl-ext info: error: ") and len(err.splitlines()) == 1
        assert re.search(match, " ".join(err.split())), err
    else:
        with pytest.raises(FormatError, match=match):
            OPENERS[opener](root)
    assert time.monotonic() - start < QUICK


@pytest.mark.parametrize("case, match", [(c[1], c[2]) for c in SCHEMA_CASES], ids=[c[0] for c in SCHEMA_CASES])
def test_verify_refuses_a_table_swapped_after_opening(root, case, match):
    storage = ShardedStorage(root)
    _hostile(root, _rows(root), case)
    start = time.monotonic()
    with pytest.raises(FormatError, match=match):
        storage.verify()
    assert time.monotonic() - start < QUICK


ROW_CASES = [
    ("text_in_first_row", ["UPDATE episodes SET first_row = 'x' WHERE episode = 1"],
     r"expected integer first_row, length and has_final, found 1 episode\(s\) with other values"),
    ("rows_not_back_to_back", ["UPDATE episodes SET first_row = first_row + 1 WHERE episode = 2"],
     r"expected episode 2 with id 2, first_row 6, length in \[1, 2\*\*48\] and has_final 0/1, found \[2, 7, 3, 1\]"),
    ("ids_shifted", ["UPDATE episodes SET episode = episode - 1"],
     r"expected episode 0 with id 0, .*found \[-1, 0, 3, 1\]"),
    ("huge_integer", ["UPDATE episodes SET length = 9223372036854775807 WHERE episode = 3"],
     r"episodes\.sqlite: expected episode 3 with id 3"),
]


@pytest.mark.parametrize("after, match", [(c[1], c[2]) for c in ROW_CASES], ids=[c[0] for c in ROW_CASES])
def test_rows_that_do_not_describe_the_shards_are_refused(root, after, match):
    _write_table(root / "episodes.sqlite", _rows(root), after=after)
    with pytest.raises(FormatError, match=match):
        ShardedStorage(root)


def test_table_symlinked_outside_the_root_is_refused_and_untouched(tmp_path, clean):
    other = shutil.copytree(clean, tmp_path / "other")
    root = shutil.copytree(clean, tmp_path / "ds")
    (root / "episodes.sqlite").unlink()
    (root / "episodes.sqlite").symlink_to(other / "episodes.sqlite")
    before = (other / "episodes.sqlite").read_bytes()
    for opener in (_open_storage, _open_writer):
        start = time.monotonic()
        with pytest.raises(FormatError, match=r"'episodes\.sqlite' resolves to .*other/episodes\.sqlite, outside "
                                              r"the dataset .*ds; copy the data into the dataset directory"):
            opener(root)
        assert time.monotonic() - start < QUICK
    assert (other / "episodes.sqlite").read_bytes() == before
    assert ShardedStorage(other).num_episodes == 4


@pytest.mark.parametrize("suffix", ["-journal", "-wal", "-shm"])
def test_sqlite_side_file_symlinked_elsewhere_is_refused(root, tmp_path, suffix):
    (tmp_path / "elsewhere").write_bytes(b"")
    (root / f"episodes.sqlite{suffix}").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FormatError, match=rf"episodes\.sqlite{suffix}: expected no link beside the episode "
                                          "table, found a symlink to"):
        ShardWriter.open(root)


def test_a_query_that_runs_away_is_stopped(root):
    table = EpisodeTable.from_dataset(root, "episodes.sqlite", query_seconds=0.2)
    start = time.monotonic()
    with pytest.raises(FormatError, match=r"episodes\.sqlite: the episode filter .* ran past its 0\.2 s budget "
                                          "and was stopped"):
        table.select(f"episode IN ({ENDLESS}SELECT x FROM c WHERE x < 0)")
    assert time.monotonic() - start < QUICK
    assert table.select("length = 3").tolist() == [0, 1, 2, 3]  # the connection still answers
    table.close()


def test_names_are_quoted_so_an_injection_name_matches_only_itself():
    where, params = where_clause({INJECTED: 5.0}, [INJECTED, "game"])
    assert where == '"score"" OR 1=1 OR ""score" = ?' and params == (5.0,)
    conn = sqlite3.connect(":memory:")
    conn.execute(f"CREATE TABLE episodes (episode INTEGER PRIMARY KEY, {quote_name(INJECTED)} REAL, game TEXT)")
    conn.executemany("INSERT INTO episodes VALUES (?, ?, ?)", [(0, 5.0, "a"), (1, 1.0, "b"), (2, None, "c")])
    assert [r[0] for r in conn.execute(f"SELECT episode FROM episodes WHERE {where}", params)] == [0]
    conn.close()


@pytest.mark.parametrize("name", ["a#b?c%41 d", "%41", "x?mode=rw", "#", "  spaced  "])
def test_root_with_uri_characters_round_trips(tmp_path, name):
    root = write_synthetic(tmp_path / name / "ds", episodes=3, length=4, obs_shape=(2,), shard_rows=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing created beside the root
    storage = ShardedStorage(root)
    storage.verify()
    td = storage[:]
    np.testing.assert_array_equal(td["observation"][:, 0].numpy(),
                                  obs_value(td["episode"].numpy(), td["step"].numpy()))
    assert [(r["episode"], r["game"], r["score"]) for r in storage.episode_table().rows("score >= 1")] == \
        [(1, "breakout", 1.0), (2, "pong", 2.0)]
    write_synthetic(root, episodes=5, length=4, obs_shape=(2,))  # resumes: ShardWriter.open on the same path
    assert ShardedStorage(root).num_episodes == 5
    assert sorted(p.name for p in root.iterdir()) == ["dataset.json", "episodes.sqlite", "events", "shards"]
