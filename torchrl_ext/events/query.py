"""``WindowQuery``: the validated rules of a window selection, shared by every consumer.

The sampler, the dataset and the command line all build one (directly or
through :meth:`WindowQuery.from_options`), so a rule is defined and checked
here only. The rules themselves are described in :mod:`torchrl_ext.events.windows`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ..validation import (
    int_in_range,
    nonnegative_int,
    one_of,
    positive_int,
    probability,
    regex,
)

__all__ = ["WindowQuery", "MAX_STEPS", "COMPAT_MODES", "option_names", "query_from"]

MAX_STEPS = 1 << 40
"""Bound of every step-valued rule (``bias``, ``min_step``, ``win_len * skip_frame``...): keeps int64 exact."""

COMPAT_MODES = (None, "minestudio")

# options whose None means "the preset's default" in :meth:`WindowQuery.from_options`
_PRESET_DEFAULTS = ("edge", "min_step", "split_mode")


@dataclass(frozen=True)
class WindowQuery:
    """Validated window-selection parameters (see :mod:`torchrl_ext.events.windows`).

    Raises ``TypeError`` for a value of the wrong type and ``ValueError`` for
    one out of range, naming the field.

    Examples:
        >>> WindowQuery(event_regex="tick:.*", win_len=4, bias=1).win_len
        4
        >>> WindowQuery(win_len=0)
        Traceback (most recent call last):
        ...
        ValueError: `win_len` must be a positive int, got 0
    """

    event_regex: str = ".*"
    win_len: int = 1
    bias: int = 0
    skip_frame: int = 1
    min_nearby: int | None = None
    max_within: int | None = None
    max_within_mode: str = "first"
    edge: str = "shift"
    min_step: int = 0
    split: str | None = None
    split_ratio: float = 0.8
    split_mode: str = "episode"
    seed: int = 0
    minestudio_start: bool = False

    def __post_init__(self) -> None:
        regex(self.event_regex, "event_regex")
        positive_int(self.win_len, "win_len")
        positive_int(self.skip_frame, "skip_frame")
        nonnegative_int(self.min_step, "min_step")
        nonnegative_int(self.min_nearby, "min_nearby", allow_none=True)
        nonnegative_int(self.max_within, "max_within", allow_none=True)
        for name in ("min_step", "min_nearby", "max_within"):
            _at_most(getattr(self, name), name)
        if self.win_len * self.skip_frame > MAX_STEPS:
            raise ValueError(f"`win_len` * `skip_frame` must be <= {MAX_STEPS}, got "
                             f"{self.win_len} * {self.skip_frame}")
        int_in_range(self.bias, "bias", -MAX_STEPS, MAX_STEPS)
        int_in_range(self.seed, "seed", 0, (1 << 63) - 1)
        one_of(self.edge, "edge", ("shift", "pad"))
        one_of(self.max_within_mode, "max_within_mode", ("first", "random"))
        one_of(self.split, "split", (None, "train", "val"))
        one_of(self.split_mode, "split_mode", ("episode", "minestudio"))
        probability(self.split_ratio, "split_ratio")
        if not isinstance(self.minestudio_start, bool):
            raise TypeError(f"`minestudio_start` must be a bool, got {self.minestudio_start!r}")

    @classmethod
    def minestudio(cls, **kwargs: Any) -> WindowQuery:
        """MineStudio 1.1.6 ``EventDataset`` semantics; ``kwargs`` override."""
        base = dict(edge="shift", min_step=128, max_within_mode="first", split_mode="minestudio",
                    minestudio_start=True)
        base.update(kwargs)
        return cls(**base)

    @classmethod
    def from_options(cls, compat: str | None = None, **options: Any) -> WindowQuery:
        """A query from keyword options, as the sampler, the dataset and the CLI take them.

        ``edge``, ``min_step`` and ``split_mode`` given as None keep the
        defaults (MineStudio's with ``compat="minestudio"``).

        Raises:
            TypeError: an option that is not a :class:`WindowQuery` field.

        Examples:
            >>> WindowQuery.from_options("minestudio", win_len=16, edge=None).min_step
            128
        """
        one_of(compat, "compat", COMPAT_MODES)
        _check_names(options)
        kw = {k: v for k, v in options.items() if v is not None or k not in _PRESET_DEFAULTS}
        return cls.minestudio(**kw) if compat else cls(**kw)


def _check_names(options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - set(option_names()))
    if unknown:
        raise TypeError(f"unknown window option(s) {unknown}; window options are {sorted(option_names())}")


def _at_most(value: int | None, name: str) -> None:
    if value is not None and value > MAX_STEPS:
        raise ValueError(f"`{name}` must be <= {MAX_STEPS} (a step count), got {value!r}")


def option_names() -> tuple[str, ...]:
    """Names :meth:`WindowQuery.from_options` accepts besides ``compat``."""
    return tuple(f.name for f in fields(WindowQuery))


def query_from(query: WindowQuery | None, options: dict[str, Any], *, owner: str) -> WindowQuery:
    """The query of a consumer taking ``query=`` or the keyword form; ``owner`` names it in errors.

    Args:
        query: the query passed as such, or None.
        options: the other keyword arguments: window options and ``compat``.
        owner: the consumer's name, for messages.

    Raises:
        TypeError: both forms, neither (the keyword form needs ``win_len``), or
            an unknown option.
    """
    if query is not None:
        if not isinstance(query, WindowQuery):
            raise TypeError(f"`query` must be a WindowQuery, got {type(query).__name__}")
        if options:
            raise TypeError(f"{owner}: pass the window rules either as `query=` or as keyword options, not "
                            f"both; got `query` and {sorted(options)}")
        return query
    options = dict(options)
    compat = options.pop("compat", None)
    _check_names(options)
    if "win_len" not in options:
        raise TypeError(f"{owner} needs `query=WindowQuery(...)` or window options with at least `win_len=`")
    return WindowQuery.from_options(compat, **options)
