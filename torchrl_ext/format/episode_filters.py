"""Keyword filters over the episode table, for people who do not write SQL.

``{"game": "space_invaders", "Score__ge": 100, "source__in": ["mturk", "email"]}``
becomes ``"game" = ? AND "Score" >= ? AND "source" IN (?, ?)`` with the values
bound as parameters (never pasted into the SQL). A name is a metadata column
as the table spells it (``"Active playtime"``, ``"env:game"``), quoted by
:func:`.sqlite_files.quote_name` (the only way a name enters the SQL); a suffix
``__<op>`` picks the comparison:

============  ==========================  =========================
suffix        SQL                         value
============  ==========================  =========================
(none)        ``= ?`` (``IN`` for a list)  a value, or list/tuple/set
``__eq``      ``= ?``                     a value
``__ne``      ``!= ?``                    a value
``__lt``      ``< ?``                     a value
``__le``      ``<= ?``                    a value
``__gt``      ``> ?``                     a value
``__ge``      ``>= ?``                    a value
``__in``      ``IN (?, ...)``             a list, tuple or set
``__between`` ``BETWEEN ? AND ?``         a pair ``(low, high)``, both ends included
``__like``    ``LIKE ?``                  a pattern (``%``, ``_``)
``__null``    ``IS NULL`` / ``IS NOT NULL``  True / False
============  ==========================  =========================

A name matches its column ignoring case, as in SQL. A name that is no column
gets the closest column names as a hint; a known column with an unknown
suffix (``Score__range``) gets the list of operators; a value of the wrong
form gets the form the operator expects.

Example:
    >>> where_clause({"game": "qbert", "Score__ge": 100}, ["game", "Score"])
    ('"game" = ? AND "Score" >= ?', ('qbert', 100))
    >>> where_clause({"Score__between": (10, 20)}, ["Score"])
    ('"Score" BETWEEN ? AND ?', (10, 20))
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from difflib import get_close_matches
from typing import Any

import numpy as np

from .sqlite_files import quote_name

__all__ = ["OPERATORS", "combine_where", "where_clause"]

OPERATORS = {"eq": "=", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "in": "IN",
             "between": "BETWEEN", "like": "LIKE", "null": "IS NULL"}
_LISTED = ", ".join(f"__{op}" for op in OPERATORS)
_SEQUENCES = (list, tuple, set, frozenset, np.ndarray)
_OTHER_SPELLINGS = {"gte": "ge", "lte": "le", "range": "between", "isnull": "null", "exact": "eq", "neq": "ne"}


def _value(name: str, value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    if value is None or not isinstance(value, (int, float, str)):
        raise TypeError(f"filter `{name}` needs an int, float or str value, got {value!r}; use `{name}__null` "
                        "for missing values")
    return value


def _close(word: str, choices: Collection[str]) -> list[str]:
    """Up to three of ``choices`` spelled like ``word`` (ignoring case)."""
    by_lower = {c.lower(): c for c in choices}
    return [by_lower[m] for m in get_close_matches(word.lower(), list(by_lower), n=3, cutoff=0.6)]


def _resolve(key: str, columns: Mapping[str, str]) -> tuple[str, str, str]:
    """``(column, operator, name as written)`` of the filter ``key``; ``columns`` maps lower case to the name.

    Raises:
        ValueError: ``key`` names no column, or a column with a suffix that is no operator.
    """
    if key.lower() in columns:
        return columns[key.lower()], "eq", key
    name, sep, op = key.rpartition("__")
    if sep and name.lower() in columns:
        if op in OPERATORS:
            return columns[name.lower()], op, name
        near = [_OTHER_SPELLINGS[op.lower()]] if op.lower() in _OTHER_SPELLINGS else _close(op, OPERATORS)[:1]
        hint = "".join(f"; did you mean `{name}__{m}`?" for m in near)
        raise ValueError(f"filter `{key}`: `__{op}` is not a filter operator; expected one of {_LISTED} "
                         f"(or no suffix for `=`){hint}")
    word = name if sep and op in OPERATORS else key
    near = _close(word, columns.values())
    hint = f"; did you mean {' or '.join(f'`{c}`' for c in near)}?" if near else ""
    raise ValueError(f"filter `{key}` names no episode column; columns are {sorted(columns.values())}{hint} "
                     f"(operators: {_LISTED})")


def _is_sequence(value: Any) -> bool:
    """A list, tuple, set or 1-d array of values (a str is one value)."""
    if isinstance(value, np.ndarray):
        return value.ndim == 1
    return isinstance(value, _SEQUENCES) and not isinstance(value, (str, bytes))


def _items(key: str, name: str, value: Any) -> list[Any]:
    if not _is_sequence(value):  # the form is wrong, whatever the type: a ValueError, like a pair of 3
        raise ValueError(f"filter `{key}` takes a list, tuple or set of values, got {value!r}; "
                         f"e.g. `{name}__in=[1, 2]`")
    ordered = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else list(value)
    return [_value(key, v) for v in ordered]


def _pair(key: str, name: str, value: Any) -> tuple[Any, Any]:
    if not _is_sequence(value) or isinstance(value, (set, frozenset)) or len(value) != 2:
        raise ValueError(f"filter `{key}` takes a pair (low, high), both included, got {value!r}; "
                         f"e.g. `{name}__between=(10, 20)`")
    low, high = _value(key, value[0]), _value(key, value[1])
    try:
        reversed_ = low > high
    except TypeError:  # a number and a str: SQLite orders them by type, nothing to check here
        reversed_ = False
    if reversed_:
        raise ValueError(f"filter `{key}` takes (low, high) with low <= high, got {value!r}; "
                         f"swap them: `{name}__between={(high, low)!r}`")
    return low, high


def where_clause(filters: Mapping[str, Any], columns: Collection[str]) -> tuple[str, tuple]:
    """An SQL ``WHERE`` clause and its parameters from keyword filters (see the module doc).

    Args:
        filters: ``{name[__op]: value}``.
        columns: the table's column names (unknown names are refused).

    Raises:
        ValueError: a name that is no column, a suffix that is no operator, or a
            value that does not have the form its operator takes.
        TypeError: a name that is not a str, or a value that is not an int, float or str.
    """
    clauses, params = [], []
    lower = {c.lower(): c for c in columns}
    for key, value in filters.items():
        if not isinstance(key, str):
            raise TypeError(f"filter names must be str, got {key!r}")
        column, op, name = _resolve(key, lower)
        col = quote_name(column)
        if op == "null":
            if not isinstance(value, bool):
                raise ValueError(f"filter `{key}` takes True (missing) or False (present), got {value!r}")
            clauses.append(f"{col} IS {'' if value else 'NOT '}NULL")
        elif op == "in" or (op == "eq" and _is_sequence(value)):
            items = _items(key, name, value)
            clauses.append(f"{col} IN ({', '.join('?' * len(items))})" if items else "0")
            params.extend(items)
        elif op == "between":
            clauses.append(f"{col} BETWEEN ? AND ?")
            params.extend(_pair(key, name, value))
        else:
            clauses.append(f"{col} {OPERATORS[op]} ?")
            params.append(_value(key, value))
    return " AND ".join(clauses), tuple(params)


def combine_where(*parts: tuple[str | None, tuple]) -> tuple[str | None, tuple]:
    """``(where, params)`` pairs joined with ``AND`` (empty ones dropped); ``(None, ())`` for none.

    Example:
        >>> combine_where(("a > ?", (1,)), (None, ()), ("b = ?", ("x",)))
        ('(a > ?) AND (b = ?)', (1, 'x'))
    """
    kept = [(where, tuple(p)) for where, p in parts if where]
    if not kept:
        return None, ()
    if len(kept) == 1:
        return kept[0]
    return " AND ".join(f"({w})" for w, _ in kept), tuple(v for _, p in kept for v in p)
