"""Argument checks shared by the public constructors: one line, naming the argument.

Each function returns the value, normalised (a Python ``int``, a ``float``, a
compiled pattern), or raises ``TypeError`` for a value of the wrong type and
``ValueError`` for a value out of range. The message names the argument in
backticks, says what was expected and what was found::

    `win_len` must be a positive int, got 0

``bool`` is not accepted where an int is expected (``True`` is almost always a
mistake there). Numpy integers and floats are accepted.

Examples:
    >>> positive_int(4, "win_len")
    4
    >>> positive_int(0, "win_len")
    Traceback (most recent call last):
    ...
    ValueError: `win_len` must be a positive int, got 0
    >>> int_in_range(None, "max_within", 0, allow_none=True) is None
    True
    >>> probability(0.25, "split_ratio")
    0.25
    >>> one_of("pad", "edge", ("shift", "pad"))
    'pad'
    >>> regex("tick:[0-9]", "event_regex").pattern
    'tick:[0-9]'

:func:`user_path` is the one place a path the caller gave becomes a ``Path``
(a leading ``~`` expanded).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["int_in_range", "nonnegative_int", "one_of", "positive_int", "probability", "regex", "user_path"]


def _bounds(lo: int | None, hi: int | None) -> str:
    if lo is not None and hi is not None:
        return f"in [{lo}, {hi}]"
    if lo is not None:
        return f">= {lo}"
    return f"<= {hi}" if hi is not None else ""


def int_in_range(value: Any, name: str, lo: int | None = None, hi: int | None = None, *,
                 allow_none: bool = False) -> int | None:
    """``value`` as an ``int`` with ``lo <= value <= hi`` (either bound may be None).

    Args:
        value: the argument.
        name: its name, as the caller wrote it.
        lo, hi: inclusive bounds; None for unbounded.
        allow_none: accept (and return) None.

    Raises:
        TypeError: ``value`` is not an int (a bool is not an int here).
        ValueError: ``value`` is outside ``[lo, hi]``.
    """
    if value is None and allow_none:
        return None
    kind = "a positive int" if (lo, hi) == (1, None) else " ".join(p for p in ("an int", _bounds(lo, hi)) if p)
    expected = f"{kind} or None" if allow_none else kind
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be {expected}, got {value!r} ({type(value).__name__})")
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"`{name}` must be {expected}, got {value!r}")
    return value


def positive_int(value: Any, name: str, *, allow_none: bool = False) -> int | None:
    """``value`` as an ``int >= 1`` (see :func:`int_in_range`)."""
    return int_in_range(value, name, 1, allow_none=allow_none)


def nonnegative_int(value: Any, name: str, *, allow_none: bool = False) -> int | None:
    """``value`` as an ``int >= 0`` (see :func:`int_in_range`)."""
    return int_in_range(value, name, 0, allow_none=allow_none)


def probability(value: Any, name: str) -> float:
    """``value`` as a ``float`` in ``[0, 1]``.

    Raises:
        TypeError: ``value`` is not a real number.
        ValueError: ``value`` is outside ``[0, 1]`` or NaN.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be in [0, 1] (a float), got {value!r} ({type(value).__name__})")
    value = float(value)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must be in [0, 1], got {value!r}")
    return value


def one_of(value: Any, name: str, choices: Collection[Any]) -> Any:
    """``value`` if it is one of ``choices``, else ``ValueError`` listing them."""
    try:
        ok = value in choices
    except TypeError:  # an unhashable value tested against a set
        ok = False
    if not ok:
        raise ValueError(f"`{name}` must be one of {tuple(choices)}, got {value!r}")
    return value


def regex(pattern: Any, name: str) -> re.Pattern[str]:
    """``pattern`` compiled with :func:`re.compile`.

    Raises:
        TypeError: ``pattern`` is not a str.
        ValueError: it does not compile (the message holds ``re``'s reason).
    """
    if not isinstance(pattern, str):
        raise TypeError(f"`{name}` must be a str holding a Python regular expression, got {pattern!r} "
                        f"({type(pattern).__name__})")
    try:
        return re.compile(pattern)
    except re.error as err:
        raise ValueError(f"`{name}` must be a valid Python regular expression, got {pattern!r} ({err})") from err


def user_path(value: Any, name: str) -> Path:
    """``value``, a file or directory path the caller gave, as a ``Path`` with a leading ``~`` expanded.

    Every public function that takes a dataset root, a source or a destination
    turns it into a ``Path`` here, so ``"~/data"`` means the home directory
    (:func:`os.path.expanduser`) and never a directory named ``~`` in the
    working directory. A relative path stays relative; ``"~user/x"`` names
    that user's home. Bucket URLs and object names are not paths and never
    come here.

    Raises:
        TypeError: ``value`` is not a str or ``os.PathLike``.

    Examples:
        >>> import os
        >>> user_path("~/data", "root") == Path(os.path.expanduser("~")) / "data"
        True
        >>> user_path("runs/pong", "root")
        PosixPath('runs/pong')
        >>> user_path(3, "root")
        Traceback (most recent call last):
        ...
        TypeError: `root` must be a path (str or os.PathLike), got int
    """
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"`{name}` must be a path (str or os.PathLike), got {type(value).__name__}")
    return Path(os.path.expanduser(value))
