"""CrowdPlay's on-disk layout (``crowdplay_datasets`` 0.1.0): the specification, a reader and a writer.

A CrowdPlay dataset directory ``DIR`` holds::

    DIR/dataset.sqlite            SQLite, the tables below
    DIR/**/<episode_id>.pickle    one trajectory per episode, anywhere under DIR:
    DIR/**/<episode_id>.pickle.gz     plain pickle, gzip or bz2 of ``pickle.dumps(steps)``
    DIR/**/<episode_id>.pickle.bz2    (CrowdPlay ships bz2; the first found of
                                      .pickle, .pickle.gz, .pickle.bz2 is used)

Tables (SQLAlchemy models of ``crowdplay_datasets/dataset.py``; ``value``
cells are SQLAlchemy ``PickleType``, i.e. ``pickle.dumps(value)`` BLOBs):

* ``episodes(episode_id TEXT PRIMARY KEY, environment_id TEXT)``
* ``environments(environment_id TEXT PRIMARY KEY, task_id TEXT)``
* ``episodekeyworddata(episode_id, agent_id, key, value)``: per-episode data
  keyed by agent (``"game_0>player_0"``, or ``"all"`` for the episode as a
  whole, e.g. ``created_on``); e.g. ``Score``, ``Active playtime`` (a
  ``timedelta``).
* ``environmentkeyworddata(environment_id, agent_id, key, value)``: e.g.
  ``game``, ``task``, ``source`` under agent ``"all"``.
* ``users(user_id, permanent_user_id, task_id, environment_id, agent_id)``
  (optional here).

A trajectory is a list of step dicts, each keyed by agent where per agent:
``prev_obs[agent]["image"]`` (uint8 ``[210, 160, 3]``, the frame *before* the
step's action), ``action[agent]["game"]`` (int), ``reward[agent]``,
``done[agent]`` (plus ``done["__all__"]``), ``info[agent]["ale.lives"]`` and
``info[agent]["RAM"]`` (128 ints), ``user_type[agent]`` (1 human, 2 AI
policy; may be missing) and CrowdPlay's bookkeeping (``step_iter``,
``action_step_iter``, ``task_callables``, ``episode_callables``), which is not
imported. The agents of an episode are the keys of ``prev_obs``.

Every pickle is read through :mod:`torchrl_ext.sources.safe_pickle`; a file
that needs anything beyond plain data is refused unrun.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import pickle
import sqlite3
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...format import FormatError, SQLiteFile, open_regular, quote_name
from ...sources.safe_pickle import MAX_RATIO, UnsafePickleError, safe_load, safe_loads
from ...validation import user_path

__all__ = [
    "DEFAULT_AGENT",
    "SQLITE_NAME",
    "SUFFIXES",
    "CrowdPlayDir",
    "CrowdPlayEpisode",
    "load_trajectory",
    "make_trajectory",
    "trajectory_agents",
    "write_crowdplay_dir",
]

DEFAULT_AGENT = "game_0>player_0"
SQLITE_NAME = "dataset.sqlite"
SUFFIXES = (".pickle", ".pickle.gz", ".pickle.bz2")  # CrowdPlay's search order
_TABLES = ("episodes", "environments", "episodekeyworddata", "environmentkeyworddata")


@dataclass
class CrowdPlayEpisode:
    """One row of ``episodes`` with everything joined to it.

    Attributes:
        episode_id, environment_id, task_id: CrowdPlay's ids.
        keyword_data: ``{agent: {key: value}}`` of the episode (``"all"`` included).
        env_keyword_data: ``{agent: {key: value}}`` of its environment.
        users: ``{agent: {"user_id": ..., "permanent_user_id": ...}}`` from ``users``.
        trajectory: the trajectory file (None: not found under the directory).
    """

    episode_id: str
    environment_id: str
    task_id: str
    keyword_data: dict[str, dict[str, Any]] = field(default_factory=dict)
    env_keyword_data: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, str]] = field(default_factory=dict)
    trajectory: Path | None = None


class CrowdPlayDir:
    """A CrowdPlay dataset directory, read-only: its episode records and trajectory files.

    Args:
        path: the directory holding ``dataset.sqlite``.

    Raises:
        FileNotFoundError: no ``dataset.sqlite`` in ``path``.
        FormatError: the file is not SQLite, lacks CrowdPlay's tables, or a
            keyword cell is not a plain-data pickle.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"`path` must be a directory path, got {type(path).__name__}")
        self.path = user_path(path, "path")
        self.sqlite = self.path / SQLITE_NAME
        if not self.sqlite.is_file():
            raise FileNotFoundError(
                f"{self.path}: no {SQLITE_NAME}; expected a CrowdPlay dataset directory (the folder that "
                f"holds {SQLITE_NAME} and the trajectory files)")
        self.episodes = self._read_tables()
        files = _trajectory_files(self.path)
        for ep in self.episodes:
            ep.trajectory = files.get(ep.episode_id)

    def __len__(self) -> int:
        return len(self.episodes)

    def _read_tables(self) -> list[CrowdPlayEpisode]:
        # A quoted file: URI, read-only, every statement on a time budget (format.sqlite_files).
        try:
            db = SQLiteFile.open(self.sqlite)
        except FormatError as err:
            reason = str(err).removeprefix(f"{self.sqlite}: ")
            raise FormatError(f"{self.sqlite}: not a readable CrowdPlay SQLite database; {reason}") from err
        try:
            names = {r[0] for r in db.query("SELECT name FROM sqlite_master WHERE type = 'table'",
                                            what="reading the schema")}
            missing = [t for t in _TABLES if t not in names]
            if missing:
                raise FormatError(
                    f"{self.sqlite}: expected CrowdPlay's tables {list(_TABLES)}, missing {missing}; "
                    "this is not a CrowdPlay dataset.sqlite")
            tasks = dict(db.query("SELECT environment_id, task_id FROM environments", what="reading environments"))
            env_kw = _keyword_rows(db, "environmentkeyworddata", "environment_id")
            ep_kw = _keyword_rows(db, "episodekeyworddata", "episode_id")
            users: dict[str, dict[str, dict[str, str]]] = {}
            if "users" in names:
                for uid, puid, env, agent in db.query(
                        "SELECT user_id, permanent_user_id, environment_id, agent_id FROM users", what="reading users"):
                    users.setdefault(str(env), {})[str(agent)] = {"user_id": str(uid),
                                                                  "permanent_user_id": str(puid)}
            out = []
            for eid, env in db.query("SELECT episode_id, environment_id FROM episodes ORDER BY episode_id",
                                     what="reading episodes"):
                eid, env = str(eid), str(env)
                out.append(CrowdPlayEpisode(eid, env, str(tasks.get(env, "")), ep_kw.get(eid, {}),
                                            env_kw.get(env, {}), users.get(env, {})))
            return out
        except sqlite3.DatabaseError as err:
            raise FormatError(
                f"{self.sqlite}: not a readable CrowdPlay SQLite database ({err}); restore the file") from err
        finally:
            db.close()


def _keyword_rows(db: SQLiteFile, table: str, id_col: str) -> dict:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    sql = f"SELECT {quote_name(id_col)}, agent_id, key, value FROM {quote_name(table)}"
    for batch in db.batches(sql, what=f"reading {table}"):
        for owner, agent, key, blob in batch:
            cell = f"{db.path} {table}({owner!s}, {agent!s}, {key!s})"
            if not isinstance(blob, (bytes, memoryview)):
                raise FormatError(f"{cell}: expected a PickleType BLOB, found {type(blob).__name__}; the table "
                                  "was not written by CrowdPlay")
            out.setdefault(str(owner), {}).setdefault(str(agent), {})[str(key)] = safe_loads(bytes(blob), cell)
    return out


def _trajectory_files(root: Path) -> dict[str, Path]:
    """``{episode_id: path}`` of every trajectory file under ``root`` (CrowdPlay's suffix order wins)."""
    found: dict[str, tuple[int, Path]] = {}
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                    continue
                for rank, suffix in enumerate(SUFFIXES):
                    if entry.name.endswith(suffix):
                        eid = entry.name[: -len(suffix)]
                        if eid not in found or rank < found[eid][0]:
                            found[eid] = (rank, Path(entry.path))
                        break
    return {k: p for k, (_, p) in found.items()}


@contextmanager
def _open(path: Path) -> Iterator[Any]:
    """The file's (decompressed) bytes as a stream; a FIFO, device or directory is refused at once, never read."""
    with open_regular(path) as raw:
        if path.name.endswith(".bz2"):
            with bz2.open(raw, "rb") as f:
                yield f
        elif path.name.endswith(".gz"):
            with gzip.open(raw, "rb") as f:
                yield f
        else:
            yield raw


def load_trajectory(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The step list of one trajectory file, through the restricted unpickler.

    Raises:
        FileNotFoundError: the file does not exist.
        UnsafePickleError: the pickle asks for a global plain data never needs.
        FormatError: truncated or corrupt compression or pickle, not a list of step dicts, or not a
            regular file (a FIFO named like a trajectory is refused at once).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        limit = size if path.suffix == ".pickle" else MAX_RATIO * size + (1 << 20)  # bounds a decompression bomb
        with _open(path) as f:
            steps = safe_load(f, str(path), max_bytes=limit)
    except UnsafePickleError:
        raise
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: trajectory file is missing; restore it or drop the episode "
                                "from dataset.sqlite") from None
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as err:
        raise FormatError(f"{path}: the compressed trajectory cannot be read ({type(err).__name__}: {err}); "
                          "the file is truncated or corrupt, download it again") from err
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        raise FormatError(f"{path}: expected a pickled list of step dicts, found {type(steps).__name__}; "
                          "not a CrowdPlay trajectory")
    return steps


# ---------------------------------------------------------------------------------------- writing
def make_trajectory(agents: Mapping[str, Mapping[str, np.ndarray]]) -> list[dict[str, Any]]:
    """Step dicts in CrowdPlay's structure from per-agent arrays (all agents the same length ``T``).

    Args:
        agents: ``{agent: {"frames": uint8 [T, H, W, 3], "actions": [T], "rewards": [T],
            "dones": [T], "ram": [T, 128], "lives": [T], "user_type": [T] (optional)}}``.

    Returns:
        The list of ``T`` step dicts, as CrowdPlay's backend records them.
    """
    lengths = {a: len(v["frames"]) for a, v in agents.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"every agent needs the same number of steps, got {lengths}")
    steps = []
    for t in range(next(iter(lengths.values()))):
        done = {a: bool(v["dones"][t]) for a, v in agents.items()}
        done["__all__"] = all(done.values())
        step: dict[str, Any] = {
            "prev_obs": {a: OrderedDict(image=np.asarray(v["frames"][t], dtype=np.uint8)) for a, v in agents.items()},
            "action": {a: {"game": int(v["actions"][t])} for a, v in agents.items()},
            "action_step_iter": {a: t for a in agents},
            "reward": {a: int(v["rewards"][t]) if float(v["rewards"][t]).is_integer() else float(v["rewards"][t])
                       for a, v in agents.items()},
            "done": done,
            "info": {a: {"ale.lives": int(v["lives"][t]), "RAM": [int(x) for x in v["ram"][t]]}
                     for a, v in agents.items()},
            "step_iter": t + 1,
        }
        if all("user_type" in v for v in agents.values()):
            step["user_type"] = {a: int(v["user_type"][t]) for a, v in agents.items()}
        steps.append(step)
    return steps


def _compress(data: bytes, compression: str) -> bytes:
    if compression == "bz2":
        return bz2.compress(data)
    if compression == "gz":
        return gzip.compress(data)
    return data


def write_crowdplay_dir(path: str | os.PathLike, episodes: Iterable[Mapping[str, Any]], *,
                        compression: str = "bz2", subdir: str = "trajectories") -> Path:
    """Writes a dataset in CrowdPlay's layout (for examples, tests and benchmarks).

    Args:
        path: new directory.
        episodes: dicts with ``episode_id``, ``environment_id``, ``task_id``,
            ``steps`` (a trajectory, e.g. from :func:`make_trajectory`),
            ``keyword_data`` and ``env_keyword_data`` (``{agent: {key: value}}``)
            and optionally ``users`` (``{agent: {"user_id", "permanent_user_id"}}``).
        compression: ``"bz2"`` (CrowdPlay's), ``"gz"`` or ``"none"``.
        subdir: folder of the trajectory files inside ``path``.

    Returns:
        ``path``.
    """
    suffix = {"bz2": ".pickle.bz2", "gz": ".pickle.gz", "none": ".pickle"}.get(compression)
    if suffix is None:
        raise ValueError(f"`compression` must be 'bz2', 'gz' or 'none', got {compression!r}")
    path = user_path(path, "path")
    if (path / SQLITE_NAME).exists():
        raise FileExistsError(f"{path}: holds a {SQLITE_NAME} already; choose a new directory")
    (path / subdir).mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path / SQLITE_NAME)
    try:
        conn.executescript(
            "CREATE TABLE environments (environment_id VARCHAR(255) PRIMARY KEY, task_id VARCHAR(255) NOT NULL);"
            "CREATE TABLE episodes (episode_id VARCHAR(255) PRIMARY KEY, environment_id VARCHAR(255) NOT NULL "
            "REFERENCES environments(environment_id));"
            "CREATE TABLE episodekeyworddata (episode_id VARCHAR(255), agent_id VARCHAR(255), key VARCHAR(255), "
            "value BLOB NOT NULL, PRIMARY KEY (episode_id, agent_id, key));"
            "CREATE TABLE environmentkeyworddata (environment_id VARCHAR(255), agent_id VARCHAR(255), "
            "key VARCHAR(255), value BLOB NOT NULL, PRIMARY KEY (environment_id, agent_id, key));"
            "CREATE TABLE users (user_id VARCHAR(255) PRIMARY KEY, permanent_user_id VARCHAR(255) NOT NULL, "
            "task_id VARCHAR(255) NOT NULL, environment_id VARCHAR(255) NOT NULL, agent_id VARCHAR(255) NOT NULL);")
        envs: dict[str, Any] = {}
        for ep in episodes:
            env = ep["environment_id"]
            if env not in envs:
                envs[env] = ep
                conn.execute("INSERT INTO environments VALUES (?, ?)", (env, ep["task_id"]))
                _insert_kw(conn, "environmentkeyworddata", env, ep.get("env_keyword_data", {}))
                for agent, u in ep.get("users", {}).items():
                    conn.execute("INSERT INTO users VALUES (?, ?, ?, ?, ?)",
                                 (u["user_id"], u["permanent_user_id"], ep["task_id"], env, agent))
            conn.execute("INSERT INTO episodes VALUES (?, ?)", (ep["episode_id"], env))
            _insert_kw(conn, "episodekeyworddata", ep["episode_id"], ep.get("keyword_data", {}))
            data = _compress(pickle.dumps(list(ep["steps"]), protocol=pickle.HIGHEST_PROTOCOL), compression)
            (path / subdir / f"{ep['episode_id']}{suffix}").write_bytes(data)
        conn.commit()
    finally:
        conn.close()
    return path


def _insert_kw(conn: sqlite3.Connection, table: str, owner: str,
               data: Mapping[str, Mapping[str, Any]]) -> None:
    conn.executemany(f"INSERT INTO {table} VALUES (?, ?, ?, ?)",
                     [(owner, agent, key, pickle.dumps(value)) for agent, kv in data.items()
                      for key, value in kv.items()])


def trajectory_agents(steps: Sequence[Mapping[str, Any]], where: str) -> list[str]:
    """The agents of a trajectory (keys of the first step's ``prev_obs``), sorted."""
    if not steps:
        raise FormatError(f"{where}: the trajectory has no steps; expected at least one")
    prev = steps[0].get("prev_obs")
    if not isinstance(prev, Mapping) or not prev:
        raise FormatError(f"{where}: step 0 has no per-agent `prev_obs` dict; not a CrowdPlay trajectory")
    return sorted(str(a) for a in prev)
