"""The on-disk dataset format: manifest, shards, episode table and event log.

This docstring is the specification. Readers and writers of the format live in
this module; everything else goes through them.

Layout of a dataset rooted at ``<root>``::

    <root>/dataset.json          the manifest (below); replaced atomically
    <root>/shards/<NNNNNN>/      one shard: a TensorDict memmap directory of rows
    <root>/shards/<NNNNNN>/final/  optional: final observations of episodes that
                                 end in this shard (TensorDict memmap, batch [K])
    <root>/episodes.sqlite       the episode table (SQLite, standard library)
    <root>/events/log-<NNNNNN>.npz  raw event rows, one file per commit

Manifest (``dataset.json``, UTF-8 JSON object):

``format_version``
    Integer, currently ``1``. Independent of the package version. A reader
    refuses any other value.
``schema``
    List of ``{"key": [str, ...], "dtype": str, "shape": [int, ...],
    "encoding": "raw"}``: one entry per stored column; ``shape`` is the
    per-row shape; ``dtype`` a numpy dtype name. Readers refuse encodings they
    do not know (only ``raw`` exists in version 1: a C-contiguous memmap
    column).
``next_from_row``
    List of keys (lists of str) whose ``("next", key)`` value is not stored:
    it is the following row's value inside the same episode, the episode's
    stored final value at its last step, or zeros when it has none.
``shards``
    List of ``{"dir": "shards/000000", "rows": int, "bytes": int,
    "checksum": "crc32:<hex>", "finals": int}``, in global row order. Global
    row ``g`` lives in the shard whose cumulative row range contains it.
``num_rows``
    Number of visible rows: the rows of complete, committed episodes. Rows of
    the shards past ``num_rows`` belong to an episode that was being written
    when the writer stopped; readers ignore them and a resuming writer
    rewrites them.
``num_episodes``
    Number of complete episodes (rows ``0..num_episodes-1`` of the table).
``episodes``
    Relative path of the episode table: table ``episodes`` with columns
    ``episode INTEGER PRIMARY KEY, first_row INTEGER, length INTEGER,
    has_final INTEGER`` plus metadata columns (INTEGER, REAL or TEXT).
    Rows with ``episode >= num_episodes`` are ignored by readers.
``event_logs``
    List of relative paths of event log files. Each ``.npz`` holds ``names``
    (str array, the file's vocabulary), ``name_id`` (int32), ``episode``,
    ``step``, ``row`` (int64, global row of the step) and ``value``
    (float64), one entry per event.
``next_shard_id``
    Integer used to name the next shard directory.
``shard_rows``
    The writer's row budget per shard (a resuming writer keeps it).
``source``
    Free-form JSON object describing where the data came from.

Shard directories follow TensorDict's memmap layout: ``meta.json`` at each
nesting level and one ``<leaf>.memmap`` raw file per column, so
``tensordict.TensorDict.load_memmap(shard_dir)`` opens a shard directly.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "KNOWN_ENCODINGS",
    "FormatError",
    "Column",
    "ShardInfo",
    "Manifest",
    "read_manifest",
    "write_manifest",
    "write_td_meta",
    "column_path",
    "fsync_dir",
    "validate_shards",
]

FORMAT_VERSION = 1
MANIFEST_NAME = "dataset.json"
EPISODES_NAME = "episodes.sqlite"
KNOWN_ENCODINGS = ("raw",)
_MAX_MANIFEST_BYTES = 64 * 1024 * 1024


class FormatError(ValueError):
    """A dataset directory does not match the format it claims."""


Key = tuple[str, ...]


@dataclass(frozen=True)
class Column:
    """One stored column: its nested key, numpy dtype and per-row shape."""

    key: Key
    dtype: np.dtype
    shape: tuple[int, ...]
    encoding: str = "raw"

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def to_json(self) -> dict[str, Any]:
        return {
            "key": list(self.key),
            "dtype": self.dtype.name,
            "shape": list(self.shape),
            "encoding": self.encoding,
        }

    @classmethod
    def from_json(cls, entry: Any, where: str) -> Column:
        if not isinstance(entry, dict) or not {"key", "dtype", "shape"} <= entry.keys():
            raise FormatError(
                f"{where}: expected a schema entry with key, dtype and shape, got {entry!r}"
            )
        encoding = entry.get("encoding", "raw")
        if encoding not in KNOWN_ENCODINGS:
            raise FormatError(
                f"{where}: column {entry['key']!r} uses encoding {encoding!r}, this reader "
                f"knows {KNOWN_ENCODINGS}; upgrade torchrl-ext to read it"
            )
        try:
            dtype = np.dtype(entry["dtype"])
        except TypeError as err:
            raise FormatError(
                f"{where}: column {entry['key']!r} has unknown dtype {entry['dtype']!r}"
            ) from err
        key = entry["key"]
        shape = entry["shape"]
        if (
            not isinstance(key, list)
            or not key
            or not all(isinstance(k, str) and k and "/" not in k and k not in (".", "..") for k in key)
        ):
            raise FormatError(f"{where}: expected a key as a list of plain names, got {key!r}")
        if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
            raise FormatError(f"{where}: expected a shape as a list of ints >= 0, got {shape!r}")
        return cls(tuple(key), dtype, tuple(shape), encoding)


@dataclass(frozen=True)
class ShardInfo:
    """One committed shard."""

    dir: str
    rows: int
    bytes: int
    checksum: str
    finals: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "dir": self.dir,
            "rows": self.rows,
            "bytes": self.bytes,
            "checksum": self.checksum,
            "finals": self.finals,
        }


@dataclass
class Manifest:
    """The parsed ``dataset.json``."""

    schema: list[Column]
    next_from_row: list[Key]
    shards: list[ShardInfo] = field(default_factory=list)
    num_rows: int = 0
    num_episodes: int = 0
    episodes: str = EPISODES_NAME
    event_logs: list[str] = field(default_factory=list)
    next_shard_id: int = 0
    shard_rows: int = 0
    source: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def stored_rows(self) -> int:
        return sum(s.rows for s in self.shards)

    def column(self, key: Key) -> Column:
        for col in self.schema:
            if col.key == key:
                return col
        raise KeyError(key)

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "schema": [c.to_json() for c in self.schema],
            "next_from_row": [list(k) for k in self.next_from_row],
            "shards": [s.to_json() for s in self.shards],
            "num_rows": self.num_rows,
            "num_episodes": self.num_episodes,
            "episodes": self.episodes,
            "event_logs": list(self.event_logs),
            "next_shard_id": self.next_shard_id,
            "shard_rows": self.shard_rows,
            "source": self.source,
        }


def _safe_relpath(root: Path, rel: Any, where: str) -> str:
    """Checks that a path from the manifest stays inside ``root``."""
    if not isinstance(rel, str) or not rel or os.path.isabs(rel) or ".." in Path(rel).parts:
        raise FormatError(
            f"{where}: expected a relative path inside the dataset, got {rel!r}; "
            "the manifest was edited or is not trusted"
        )
    return rel


def read_manifest(root: str | os.PathLike) -> Manifest:
    """Reads and validates ``<root>/dataset.json`` (not the shard files).

    Raises:
        FileNotFoundError: when there is no manifest.
        FormatError: when the manifest is malformed or of an unknown version.
    """
    root = Path(root)
    path = root / MANIFEST_NAME
    if not path.is_file() and (root / ".preprocess").is_dir():
        raise FileNotFoundError(
            f"{root}: an unfinished preprocess() run, not a dataset yet; call preprocess() "
            "again with the same arguments to resume it"
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no dataset manifest found; expected a directory written by "
            "torchrl_ext.ShardWriter"
        )
    size = path.stat().st_size
    if size > _MAX_MANIFEST_BYTES:
        raise FormatError(f"{path}: manifest is {size} bytes, expected at most {_MAX_MANIFEST_BYTES}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FormatError(f"{path}: expected a JSON manifest, could not parse it ({err})") from err
    if not isinstance(raw, dict):
        raise FormatError(f"{path}: expected a JSON object, found {type(raw).__name__}")
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise FormatError(
            f"{path}: format_version {version!r} is not supported, this reader knows "
            f"{FORMAT_VERSION}; upgrade torchrl-ext or rewrite the dataset"
        )
    where = str(path)
    try:
        schema = [Column.from_json(e, where) for e in raw["schema"]]
        next_from_row = [tuple(k) for k in raw.get("next_from_row", [])]
        shards = []
        for s in raw["shards"]:
            rel = _safe_relpath(root, s.get("dir"), where)
            rows, nbytes = s.get("rows"), s.get("bytes")
            if not isinstance(rows, int) or rows < 0 or not isinstance(nbytes, int):
                raise FormatError(f"{where}: shard {rel!r} has invalid rows/bytes {rows!r}/{nbytes!r}")
            shards.append(ShardInfo(rel, rows, nbytes, str(s.get("checksum", "")), int(s.get("finals", 0))))
        manifest = Manifest(
            schema=schema,
            next_from_row=next_from_row,
            shards=shards,
            num_rows=int(raw["num_rows"]),
            num_episodes=int(raw["num_episodes"]),
            episodes=_safe_relpath(root, raw.get("episodes", EPISODES_NAME), where),
            event_logs=[_safe_relpath(root, p, where) for p in raw.get("event_logs", [])],
            next_shard_id=int(raw.get("next_shard_id", len(shards))),
            shard_rows=int(raw.get("shard_rows", 0)),
            source=dict(raw.get("source", {})),
        )
    except (KeyError, TypeError, AttributeError) as err:
        raise FormatError(f"{where}: manifest is missing or has a malformed field ({err!r})") from err
    if not 0 <= manifest.num_rows <= manifest.stored_rows:
        raise FormatError(
            f"{where}: num_rows={manifest.num_rows} but the shards hold {manifest.stored_rows} rows"
        )
    keys = [c.key for c in schema]
    for k in next_from_row:
        if k not in keys:
            raise FormatError(f"{where}: next_from_row names {k!r}, which is not in the schema")
    return manifest


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(root: str | os.PathLike, manifest: Manifest) -> None:
    """Replaces ``<root>/dataset.json`` atomically (write, fsync, rename)."""
    data = json.dumps(manifest.to_json(), indent=1).encode("utf-8")
    _atomic_write_bytes(Path(root) / MANIFEST_NAME, data)


def column_path(shard_dir: Path, key: Key) -> Path:
    """Path of a column's raw file inside a shard directory."""
    return shard_dir.joinpath(*key[:-1], f"{key[-1]}.memmap")


def write_td_meta(directory: Path, columns: list[Column], rows: int) -> None:
    """Writes TensorDict's ``meta.json`` files so ``TensorDict.load_memmap`` opens ``directory``."""
    tree: dict[Key, dict[str, Any]] = {(): {}}
    for col in columns:
        for depth in range(1, len(col.key)):
            prefix = col.key[:depth]
            tree.setdefault(prefix, {})
            tree[prefix[:-1]][prefix[-1]] = {"type": "TensorDict"}
        tree[col.key[:-1]][col.key[-1]] = {
            "device": "cpu",
            "shape": [rows, *col.shape],
            "dtype": f"torch.{_torch_dtype_name(col.dtype)}",
            "is_nested": False,
        }
    for prefix, entries in tree.items():
        meta = dict(entries)
        meta.update(shape=[rows], device="cpu", _type="<class 'tensordict._td.TensorDict'>")
        d = directory.joinpath(*prefix)
        d.mkdir(parents=True, exist_ok=True)
        (d / "meta.json").write_text(json.dumps(meta), encoding="utf-8")


def _torch_dtype_name(dtype: np.dtype) -> str:
    names = {
        "bool": "bool", "uint8": "uint8", "int8": "int8", "int16": "int16",
        "int32": "int32", "int64": "int64", "float16": "float16",
        "float32": "float32", "float64": "float64", "uint16": "uint16",
        "uint32": "uint32", "uint64": "uint64",
    }
    try:
        return names[dtype.name]
    except KeyError as err:
        raise TypeError(f"dtype {dtype} has no torch equivalent; use one of {sorted(names)}") from err


def validate_shards(root: str | os.PathLike, manifest: Manifest) -> None:
    """Checks that every shard directory and column file exists with the right size."""
    root = Path(root)
    for shard in manifest.shards:
        d = root / shard.dir
        if not d.is_dir():
            raise FormatError(
                f"{d}: shard listed in {root / MANIFEST_NAME} is missing; restore it or "
                "rewrite the dataset"
            )
        for col in manifest.schema:
            p = column_path(d, col.key)
            expected = shard.rows * col.row_bytes
            try:
                found = p.stat().st_size
            except FileNotFoundError:
                raise FormatError(
                    f"{p}: column file is missing; expected {expected} bytes for {shard.rows} rows"
                ) from None
            if found != expected:
                raise FormatError(
                    f"{p}: expected {expected} bytes ({shard.rows} rows of {col.shape} "
                    f"{col.dtype}), found {found}; the file is truncated or corrupt"
                )
