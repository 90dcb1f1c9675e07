"""The manifest (``dataset.json``): columns, shards and counts, read and validated, written atomically."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..validation import user_path
from .columns import KNOWN_ENCODINGS, MAX_ROW_BYTES, MAX_ROWS, Column, Key
from .errors import FormatError
from .files import atomic_write_json, loads_json, open_inside

__all__ = [
    "FORMAT_VERSION",
    "READABLE_VERSIONS",
    "MANIFEST_NAME",
    "INCOMPLETE_NAME",
    "EPISODES_NAME",
    "KNOWN_ENCODINGS",
    "MAX_ROW_BYTES",
    "Column",
    "ShardInfo",
    "Manifest",
    "read_manifest",
    "write_manifest",
    "final_columns",
    "manifest_crc",
    "FINAL_ROW",
]

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST_NAME = "dataset.json"
INCOMPLETE_NAME = ".incomplete"  # text hint left by an unfinished multi-step write
EPISODES_NAME = "episodes.sqlite"
FINAL_ROW: Key = ("row",)
_MAX_MANIFEST_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ShardInfo:
    """One committed shard.

    ``meta_crcs`` pairs the path of each TensorDict ``meta.json`` of the shard
    (relative to its directory) with its ``"crc32:<hex>"``; empty for shards
    committed before these were recorded.
    """

    dir: str
    rows: int
    bytes: int
    checksum: str
    finals: int = 0
    meta_crcs: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.meta_crcs, dict):  # as to_json writes it
            object.__setattr__(self, "meta_crcs", tuple(sorted(self.meta_crcs.items())))

    def to_json(self) -> dict[str, Any]:
        return {
            "dir": self.dir,
            "rows": self.rows,
            "bytes": self.bytes,
            "checksum": self.checksum,
            "finals": self.finals,
            **({"meta_crcs": dict(self.meta_crcs)} if self.meta_crcs else {}),
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
    encodings: list[Column] = field(default_factory=list)
    event_log_crcs: list[str] = field(default_factory=list)
    episodes_crc: str = ""

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
            **({"encodings": [c.to_json() for c in self.encodings]} if self.encodings else {}),
            **({"event_log_crcs": list(self.event_log_crcs)} if self.event_log_crcs else {}),
            **({"episodes_crc": self.episodes_crc} if self.episodes_crc else {}),
        }


def _safe_relpath(root: Path, rel: Any, where: str) -> str:
    """Checks that a path from the manifest stays inside ``root``."""
    if not isinstance(rel, str) or not rel or os.path.isabs(rel) or ".." in Path(rel).parts:
        raise FormatError(
            f"{where}: expected a relative path inside the dataset, got {rel!r}; "
            "the manifest was edited or is not trusted"
        )
    return rel


def _int(value: Any, name: str, where: str, low: int = 0, high: int = MAX_ROWS) -> int:
    if type(value) is not int or not low <= value <= high:
        raise FormatError(f"{where}: expected `{name}` to be an int in [{low}, {high}], got {value!r}")
    return value


def _read_shard(root: Path, s: Any, where: str) -> ShardInfo:
    if not isinstance(s, dict):
        raise FormatError(f"{where}: expected a shard entry as an object, got {s!r}")
    rel = _safe_relpath(root, s.get("dir"), where)
    rows = _int(s.get("rows"), f"rows` of shard `{rel}", where)
    nbytes = _int(s.get("bytes"), f"bytes` of shard `{rel}", where, high=1 << 62)
    finals = _int(s.get("finals", 0), f"finals` of shard `{rel}", where, high=rows)
    checksum = s.get("checksum", "")
    if not isinstance(checksum, str):
        raise FormatError(f"{where}: expected the checksum of shard {rel!r} as a str, got {checksum!r}")
    metas = s.get("meta_crcs", {})
    if not isinstance(metas, dict) or not all(isinstance(v, str) for v in metas.values()):
        raise FormatError(f"{where}: expected `meta_crcs` of shard {rel!r} as an object of str, got {metas!r}")
    for name in metas:
        _safe_relpath(root, name, where)
    return ShardInfo(rel, rows, nbytes, checksum, finals, tuple(sorted(metas.items())))


def _strings(values: Any, name: str, where: str) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise FormatError(f"{where}: expected `{name}` to be str values, got {values!r}")
    return values


def _read_key(k: Any, where: str) -> Key:
    if not isinstance(k, list) or not k or not all(isinstance(x, str) for x in k):
        raise FormatError(f"{where}: expected a key as a list of str, got {k!r}")
    return tuple(k)


def read_manifest(root: str | os.PathLike) -> Manifest:
    """Reads and validates ``<root>/dataset.json`` (not the shard files).

    Raises:
        FileNotFoundError: when there is no manifest.
        FormatError: when the manifest is malformed or of an unknown version.
    """
    root = user_path(root, "root")
    path = root / MANIFEST_NAME
    if not path.is_file():
        hint = root / INCOMPLETE_NAME
        if os.path.lexists(hint):  # never read: its content (or a link's target) is no one's message
            raise FileNotFoundError(
                f"{root}: no manifest but a {INCOMPLETE_NAME} file: an unfinished preprocess() run, not a "
                "dataset yet; call preprocess() again with the same arguments to resume it (or overwrite=True)"
            )
        raise FileNotFoundError(
            f"{path}: no dataset manifest found; expected a directory written by "
            "torchrl_ext.ShardWriter"
        )
    with open_inside(root, path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > _MAX_MANIFEST_BYTES:
            raise FormatError(f"{path}: manifest is {size} bytes, expected at most {_MAX_MANIFEST_BYTES}")
        data = f.read(_MAX_MANIFEST_BYTES + 1)
    try:
        raw = loads_json(data.decode("utf-8"))
    except ValueError as err:  # not UTF-8, not JSON, or nested deeper than MAX_JSON_DEPTH
        raise FormatError(f"{path}: expected a JSON manifest, could not parse it ({err})") from err
    if not isinstance(raw, dict):
        raise FormatError(f"{path}: expected a JSON object, found {type(raw).__name__}")
    version = raw.get("format_version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise FormatError(
            f"{path}: format_version {version!r} is not supported, this reader knows "
            f"{READABLE_VERSIONS}; upgrade torchrl-ext or rewrite the dataset"
        )
    where = str(path)
    try:
        schema = [Column.from_json(e, where) for e in raw["schema"]]
        next_from_row = [_read_key(k, where) for k in raw.get("next_from_row", [])]
        shards = [_read_shard(root, s, where) for s in raw["shards"]]
        source = raw.get("source", {})
        if not isinstance(source, dict):
            raise FormatError(f"{where}: expected `source` to be an object, got {source!r}")
        manifest = Manifest(
            schema=schema,
            next_from_row=next_from_row,
            shards=shards,
            num_rows=_int(raw["num_rows"], "num_rows", where),
            num_episodes=_int(raw["num_episodes"], "num_episodes", where),
            episodes=_safe_relpath(root, raw.get("episodes", EPISODES_NAME), where),
            event_logs=[_safe_relpath(root, p, where) for p in raw.get("event_logs", [])],
            next_shard_id=_int(raw.get("next_shard_id", len(shards)), "next_shard_id", where),
            shard_rows=_int(raw.get("shard_rows", 0), "shard_rows", where),
            source=source,
            format_version=version,
            encodings=[Column.from_json({"dtype": "uint8", "shape": [], **e}, where)
                       for e in raw.get("encodings", [])],
            event_log_crcs=_strings(raw.get("event_log_crcs", []), "event_log_crcs", where),
            episodes_crc=_strings([raw.get("episodes_crc", "")], "episodes_crc", where)[0],
        )
    except (KeyError, TypeError, AttributeError) as err:
        raise FormatError(f"{where}: manifest is missing or has a malformed field ({err!r})") from err
    if not 0 <= manifest.num_rows <= manifest.stored_rows:
        raise FormatError(
            f"{where}: num_rows={manifest.num_rows} but the shards hold {manifest.stored_rows} rows"
        )
    if version >= 2 and raw.get("manifest_crc") != manifest_crc(raw):
        raise FormatError(
            f"{where}: the manifest's checksum {raw.get('manifest_crc')!r} does not match its "
            f"content ({manifest_crc(raw)}); it was edited or damaged: restore it from a copy"
        )
    if manifest.event_log_crcs and len(manifest.event_log_crcs) != len(manifest.event_logs):
        raise FormatError(
            f"{where}: {len(manifest.event_log_crcs)} event log checksums for {len(manifest.event_logs)} logs"
        )
    keys = [c.key for c in schema]
    if len(set(keys)) != len(keys):
        raise FormatError(f"{where}: the schema lists a column twice: {keys}")
    for k in next_from_row:
        if k not in keys:
            raise FormatError(f"{where}: next_from_row names {k!r}, which is not in the schema")
    return manifest


def manifest_crc(body: dict[str, Any]) -> str:
    """Self-checksum of a manifest: crc32 of its canonical JSON without ``manifest_crc``."""
    import zlib

    fields = {k: v for k, v in body.items() if k != "manifest_crc"}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return f"crc32:{zlib.crc32(canonical.encode('ascii')):08x}"


def write_manifest(root: str | os.PathLike, manifest: Manifest) -> None:
    """Replaces ``<root>/dataset.json`` atomically (write, fsync, rename)."""
    manifest.format_version = FORMAT_VERSION
    body = manifest.to_json()
    body["manifest_crc"] = manifest_crc(body)
    atomic_write_json(user_path(root, "root") / MANIFEST_NAME, body, indent=1)


def final_columns(manifest: Manifest) -> list[Column]:
    """Columns of a shard's ``final/`` directory: the local row, then each ``next_from_row`` key.

    Final values are stored raw whatever the column's encoding (one row per episode).
    """
    if not manifest.next_from_row:
        return []
    cols = [Column(FINAL_ROW, np.dtype(np.int64), ())]
    for key in manifest.next_from_row:
        c = manifest.column(key)
        cols.append(Column(c.key, c.dtype, c.shape))
    return cols
