"""Keyword filters over the episode table, for people who do not write SQL.

``{"game": "space_invaders", "Score__ge": 100, "source__in": ["mturk", "email"]}``
becomes ``"game" = ? AND "Score" >= ? AND "source" IN (?, ?)`` with the values
bound as parameters (never pasted into the SQL). A name is a metadata column
as the table spells it (``"Active playtime"``, ``"env:game"``), quoted by
:func:`.sqlite_files.quote_name` (the only way a name enters the SQL); a suffix
``__<op>`` picks the comparison:

=========  ==========================  =========================
suffix     SQL                         value
=========  ==========================  =========================
(none)     ``= ?`` (``IN`` for a list)  a value, or list/tuple/set
``__eq``   ``= ?``                     a value
``__ne``   ``!= ?``                    a value
``__lt``   ``< ?``                     a value
``__le``   ``<= ?``                    a value
``__gt``   ``> ?``                     a value
``__ge``   ``>= ?``                    a value
``__in``   ``IN (?, ...)``             a list, tuple or set
``__like`` ``LIKE ?``                  a pattern (``%``, ``_``)
``__null`` ``IS NULL`` / ``IS NOT NULL``  True / False
=========  ==========================  =========================

Example:
    >>> where_clause({"game": "qbert", "Score__ge": 100}, ["game", "Score"])
    ('"game" = ? AND "Score" >= ?', ('qbert', 100))
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import numpy as np

from .sqlite_files import quote_name

__all__ = ["OPERATORS", "combine_where", "where_clause"]

OPERATORS = {"eq": "=", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "in": "IN", "like": "LIKE",
             "null": "IS NULL"}


def _value(name: str, value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    if value is None or not isinstance(value, (int, float, str)):
        raise TypeError(f"filter `{name}` needs an int, float or str value, got {value!r}; use `{name}__null` "
                        "for missing values")
    return value


def _split(key: str, columns: Collection[str]) -> tuple[str, str]:
    if key in columns:
        return key, "eq"
    name, sep, op = key.rpartition("__")
    if sep and op in OPERATORS and name:
        return name, op
    return key, "eq"


def where_clause(filters: Mapping[str, Any], columns: Collection[str]) -> tuple[str, tuple]:
    """An SQL ``WHERE`` clause and its parameters from keyword filters (see the module doc).

    Args:
        filters: ``{name[__op]: value}``.
        columns: the table's column names (unknown names are refused).

    Raises:
        ValueError: a name that is no column, or a value that does not fit its operator.
        TypeError: a value that is not an int, float or str.
    """
    clauses, params = [], []
    lower = {c.lower(): c for c in columns}
    for key, value in filters.items():
        if not isinstance(key, str):
            raise TypeError(f"filter names must be str, got {key!r}")
        name, op = _split(key, columns)
        if name.lower() not in lower:
            raise ValueError(f"filter `{key}` names no episode column; columns are {sorted(columns)} "
                             f"(operators: __{', __'.join(OPERATORS)})")
        col = quote_name(lower[name.lower()])
        if op == "null":
            if not isinstance(value, bool):
                raise ValueError(f"filter `{key}` takes True (missing) or False (present), got {value!r}")
            clauses.append(f"{col} IS {'' if value else 'NOT '}NULL")
        elif op == "in" or (op == "eq" and isinstance(value, (list, tuple, set, frozenset, np.ndarray))):
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
                raise ValueError(f"filter `{key}` takes a list, tuple or set of values, got {value!r}")
            items = [_value(key, v) for v in (sorted(value, key=repr) if isinstance(value, (set, frozenset))
                                              else list(value))]
            if not items:
                clauses.append("0")
            else:
                clauses.append(f"{col} IN ({', '.join('?' * len(items))})")
                params.extend(items)
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
