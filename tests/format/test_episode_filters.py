"""Keyword filters: SQL and parameters per operator, rows selected like a naive filter, one-line errors naming the problem."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from torchrl_ext.format import where_clause
from torchrl_ext.format.episode_filters import OPERATORS

COLUMNS = ["game", "Score", "Active playtime"]
ROWS = [("pong", 10, 1.5), ("qbert", 20, 3.0), ("pong", 30, None), ("breakout", 40, 6.0), ("qbert", 50, 7.5)]


@pytest.mark.parametrize("filters, sql, params", [
    ({"game": "pong"}, '"game" = ?', ("pong",)),
    ({"Score__ne": 10}, '"Score" != ?', (10,)),
    ({"Score__lt": 30, "Score__ge": 10}, '"Score" < ? AND "Score" >= ?', (30, 10)),
    ({"game__in": ["qbert", "pong"]}, '"game" IN (?, ?)', ("qbert", "pong")),
    ({"game": ("qbert",)}, '"game" IN (?)', ("qbert",)),
    ({"Score__between": (20, 40)}, '"Score" BETWEEN ? AND ?', (20, 40)),
    ({"Score__between": np.array([20, 40])}, '"Score" BETWEEN ? AND ?', (20, 40)),
    ({"game__like": "p%"}, '"game" LIKE ?', ("p%",)),
    ({"Active playtime__null": True}, '"Active playtime" IS NULL', ()),
    ({"score__le": 20, "GAME": "pong"}, '"Score" <= ? AND "game" = ?', (20, "pong")),  # names ignore case, as SQL
], ids=["eq", "ne", "lt ge", "in", "eq list", "between", "between array", "like", "null", "case"])
def test_each_operator_gives_its_sql_and_parameters(filters, sql, params):
    assert where_clause(filters, COLUMNS) == (sql, params)


def test_the_operator_table_lists_between():
    assert OPERATORS["between"] == "BETWEEN" and set(OPERATORS) == {
        "eq", "ne", "lt", "le", "gt", "ge", "in", "between", "like", "null"}


def _select(filters):
    db = sqlite3.connect(":memory:")
    db.execute('CREATE TABLE t (episode INTEGER, "game" TEXT, "Score" INTEGER, "Active playtime" REAL)')
    db.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", [(i, *r) for i, r in enumerate(ROWS)])
    where, params = where_clause(filters, COLUMNS)
    return [e for (e,) in db.execute(f"SELECT episode FROM t WHERE {where} ORDER BY episode", params)]


@pytest.mark.parametrize("filters, keep", [
    ({"Score__between": (20, 40)}, lambda g, s, p: 20 <= s <= 40),
    ({"Score__between": [10, 10]}, lambda g, s, p: s == 10),
    ({"Active playtime__between": (1.5, 6.0), "game__ne": "qbert"},
     lambda g, s, p: p is not None and 1.5 <= p <= 6.0 and g != "qbert"),
    ({"game__in": {"pong", "breakout"}, "Score__gt": 10}, lambda g, s, p: g in ("pong", "breakout") and s > 10),
    ({"Active playtime__null": False, "Score__le": 40}, lambda g, s, p: p is not None and s <= 40),
], ids=["between", "between one value", "between floats", "in set", "not null"])
def test_filters_select_what_a_naive_filter_selects(filters, keep):
    expected = [i for i, row in enumerate(ROWS) if keep(*row)]
    assert expected and _select(filters) == expected


@pytest.mark.parametrize("filters, error, match", [
    # a known column with an unknown operator: the operators, and the nearest one
    ({"Score__range": (1, 2)}, ValueError,
     (r"^filter `Score__range`: `__range` is not a filter operator; expected one of __eq, __ne, __lt, __le, __gt, "
     r"__ge, __in, __between, __like, __null \(or no suffix for `=`\); did you mean `Score__between`\?$")),
    ({"Score__gte": 1}, ValueError, r"`__gte` is not a filter operator; .* did you mean `Score__ge`\?$"),
    ({"Score__betwen": (1, 2)}, ValueError, r"`__betwen` is not a filter operator; .* did you mean `Score__between`"),
    ({"Active playtime__max": 3}, ValueError, r"^filter `Active playtime__max`: `__max` is not a filter operator"),
    # a known operator with a value of the wrong form: the form it takes
    ({"Score__between": 1}, ValueError,
     r"^filter `Score__between` takes a pair \(low, high\), both included, got 1; e.g. `Score__between=\(10, 20\)`$"),
    ({"Score__between": (1, 2, 3)}, ValueError, r"takes a pair \(low, high\), both included, got \(1, 2, 3\)"),
    ({"Score__between": "1,2"}, ValueError, r"takes a pair \(low, high\), both included, got '1,2'"),
    ({"Score__between": {1, 2}}, ValueError, r"takes a pair \(low, high\), both included, got \{1, 2\}"),
    ({"Score__between": (40, 20)}, ValueError,
     (r"^filter `Score__between` takes \(low, high\) with low <= high, got \(40, 20\); swap them: "
     r"`Score__between=\(20, 40\)`$")),
    ({"Score__between": (1, None)}, TypeError, r"^filter `Score__between` needs an int, float or str value, got None"),
    ({"game__in": "pong"}, ValueError,
     r"^filter `game__in` takes a list, tuple or set of values, got 'pong'; e.g. `game__in=\[1, 2\]`$"),
    ({"game__in": 3}, ValueError, r"^filter `game__in` takes a list, tuple or set of values, got 3"),
    ({"game__null": "yes"}, ValueError, r"^filter `game__null` takes True \(missing\) or False \(present\), got 'yes'$"),
    ({"Score__ge": [1, 2]}, TypeError, r"^filter `Score__ge` needs an int, float or str value, got \[1, 2\]"),
    # a name that is no column: the columns, and the nearest ones
    ({"gmae": "pong"}, ValueError,
     (r"^filter `gmae` names no episode column; columns are \['Active playtime', 'Score', 'game'\]; "
     r"did you mean `game`\? \(operators: __eq, ")),
    ({"scor__ge": 3}, ValueError, r"^filter `scor__ge` names no episode column; .*; did you mean `Score`\?"),
    ({"level": 3}, ValueError, r"^filter `level` names no episode column; columns are \[[^;]*\] \(operators: "),
    ({3: "x"}, TypeError, r"^filter names must be str, got 3$"),
], ids=["unknown op", "django gte", "misspelt op", "op of a spaced name", "between scalar", "between triple",
        "between str", "between set", "between reversed", "between None", "in str", "in int", "null str",
        "scalar list", "misspelt column", "misspelt column with op", "unknown column", "non-str name"])
def test_errors_name_the_actual_problem(filters, error, match):
    with pytest.raises(error, match=match):
        where_clause(filters, COLUMNS)
