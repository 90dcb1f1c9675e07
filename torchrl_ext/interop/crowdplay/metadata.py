"""CrowdPlay keyword data -> typed episode metadata, under the names CrowdPlay users filter on.

One dataset episode per (CrowdPlay episode, agent). Its metadata columns:

* ``episode_id``, ``agent_id``, ``environment_id``, ``task_id`` (TEXT);
* each episode keyword of the agent under its own key, exactly as CrowdPlay
  writes it (``"Score"``, ``"Active playtime"``); episode keywords of agent
  ``"all"`` (``created_on``) under their key too, or ``"all:<key>"`` when the
  agent has the same key;
* environment keyword data as ``"env:<key>"`` (``"env:game"``, ``"env:task"``,
  ``"env:source"``), the agent's own before ``"all"``'s (then ``"env:all:<key>"``);
* ``game``, ``task`` and ``source``: the environment's, under their bare names,
  so ``game = 'space_invaders' AND task = 'insideout' AND source = 'mturk'
  AND score >= 100`` works as written (SQLite names are case-insensitive:
  ``score`` is ``"Score"``);
* ``user_id``, ``permanent_user_id`` from ``users`` when present.

Values are stored typed, so comparisons mean what they say (CrowdPlay's own
SQL compares pickled BLOBs with numbers, which SQLite always finds larger):
numbers as INTEGER or REAL, ``timedelta`` as REAL seconds, ``datetime`` /
``date`` as ISO-8601 TEXT (ordered like the dates), other containers as JSON
TEXT. A key whose values mix kinds across episodes gets the widest: REAL
when ints and floats mix, TEXT when numbers and strings mix.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ...format import FormatError
from ...format.episodes import FIXED_COLUMNS
from .layout import CrowdPlayEpisode

__all__ = ["ALIASES", "IDS", "MetadataPlan", "plain_value"]

IDS = ("episode_id", "agent_id", "environment_id", "task_id")
ALIASES = ("game", "task", "source")
_OWN = set(IDS) | {"user_id", "permanent_user_id", "user_type", "trajectory_file"}
_KINDS = ("int", "float", "str")


def plain_value(value: Any) -> int | float | str | None:
    """A keyword value as an SQL-storable int, float or str (None: nothing to store).

    Examples:
        >>> plain_value(datetime.timedelta(seconds=55)), plain_value(datetime.datetime(2021, 10, 2, 13, 49))
        (55.0, '2021-10-02T13:49:00')
        >>> plain_value(True), plain_value(np.float32(0.5)), plain_value([1, 2])
        (1, 0.5, '[1, 2]')
    """
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (set, frozenset)):
        value = sorted(value, key=repr)
    try:
        return json.dumps(value, default=str, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def _kind(value: int | float | str) -> str:
    return "str" if isinstance(value, str) else "float" if isinstance(value, float) else "int"


def _clean(name: str) -> str:
    name = str(name).replace('"', "'").replace("\x00", "")
    name = "".join(c if c.isprintable() else "_" for c in name)[:128]  # the table's alphabet (format.episode_schema)
    if name in _OWN or name.lower() in FIXED_COLUMNS:
        return f"kw:{name}"
    return name


def _named(ep: CrowdPlayEpisode, agent: str) -> dict[str, Any]:
    """The raw (untyped) metadata of one (episode, agent)."""
    out: dict[str, Any] = {"episode_id": ep.episode_id, "agent_id": agent,
                           "environment_id": ep.environment_id, "task_id": ep.task_id}
    for data, prefix in ((ep.keyword_data, ""), (ep.env_keyword_data, "env:")):
        own = data.get(agent, {}) if agent != "all" else {}
        for key, value in data.get("all", {}).items():
            name = _clean(f"{prefix}all:{key}" if key in own else f"{prefix}{key}")
            out[name] = plain_value(value)
        for key, value in own.items():
            out[_clean(f"{prefix}{key}")] = plain_value(value)
    for alias in ALIASES:
        value = ep.env_keyword_data.get("all", {}).get(alias)
        if alias not in out and value is not None:
            out[alias] = plain_value(value)
    out.update(ep.users.get(agent, {}))
    return {k: v for k, v in out.items() if v is not None}


class MetadataPlan:
    """The SQL type of every metadata name, fixed over all episodes before the first one is written.

    Args:
        episodes: the records to import.
        agents: ``episode_id -> agents`` known in advance (default: the keyword
            data's agents other than ``"all"``); types only, the trajectory
            decides the agents.
    """

    def __init__(self, episodes: Iterable[CrowdPlayEpisode]) -> None:
        kinds: dict[str, set[str]] = {}
        lower: dict[str, str] = {}
        for ep in episodes:
            agents = {a for d in (ep.keyword_data, ep.env_keyword_data, ep.users) for a in d if a != "all"}
            for agent in sorted(agents) or ["all"]:
                for name, value in _named(ep, agent).items():
                    spelled = lower.setdefault(name.lower(), name)
                    if spelled != name:
                        raise FormatError(
                            f"episode {ep.episode_id}: keyword {name!r} differs from {spelled!r} only in "
                            "case, and SQL column names are case-insensitive; rename one in dataset.sqlite")
                    kinds.setdefault(name, set()).add(_kind(value))
        self.kinds = {k: ("str" if "str" in v else "float" if "float" in v else "int") for k, v in kinds.items()}
        for name in ("user_type",):
            self.kinds.setdefault(name, "int")
        self.kinds.setdefault("trajectory_file", "str")

    def metadata(self, ep: CrowdPlayEpisode, agent: str, extra: Mapping[str, Any] = ()) -> dict[str, Any]:
        """The typed metadata of (``ep``, ``agent``) plus ``extra`` (names the plan knows)."""
        out = {}
        for name, value in {**_named(ep, agent), **dict(extra)}.items():
            kind = self.kinds.get(name) or _kind(value)
            self.kinds.setdefault(name, kind)
            if kind == "str" and not isinstance(value, str):
                value = repr(value) if isinstance(value, float) else str(value)
            elif kind == "float":
                value = float(value)
            out[name] = value
        return out

    def columns(self) -> dict[str, str]:
        """``{name: "INTEGER" | "REAL" | "TEXT"}``."""
        sql = {"int": "INTEGER", "float": "REAL", "str": "TEXT"}
        return {k: sql[v] for k, v in self.kinds.items()}
