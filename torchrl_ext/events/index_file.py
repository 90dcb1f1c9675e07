"""The saved event index, ``<root>/events/index/``: specification, writer and reader.

Layout (beside the shards, never inside them)::

    meta.json     UTF-8 JSON object, below
    name_id.npy   int32   [N]  index into ``names``
    episode.npy   int64   [N]
    step.npy      int64   [N]  step inside the episode
    row.npy       int64   [N]  global row of the step
    value.npy     float64 [N]

Arrays are ``.npy`` files (format 1.0 or 2.0, C order, no pickles) sorted by
``(name_id, row)``: by name, then in dataset order.

``meta.json``:

``index_version``
    Integer, currently ``2``, independent of the package version. Version
    ``1`` (derivations stored as strings such as ``"column:reward=next/reward"``,
    no ``source``) is recognised only to be rebuilt; other values are refused.
``num_events``
    ``N``.
``names``
    Sorted list of distinct str: the name vocabulary.
``source``
    ``{"logs": [str, ...], "num_episodes": int, "num_rows": int}``: the
    manifest state the index was built from (``event_logs``, ``num_episodes``,
    ``num_rows``); an index whose source differs from the current manifest is
    stale. ``null`` for an index not built from a dataset.
``derived``
    List of the derivations merged in, each ``{"kind": "column", "prefix":
    str, "key": [str, ...]}`` (sign events of a scalar column) or ``{"kind":
    "counters", "key": [str, ...]}`` (deltas of counter columns under a key
    prefix). Rebuilding with them reproduces the index.

Writing: every file is written and fsynced inside ``events/.tmp-index-<hex>/``,
which is renamed to ``events/index-<hex>/``; ``events/index`` is a symlink to
it, replaced atomically, so a reader (and a process killed at any moment)
sees the old index or the new one. The replaced directory is removed after. Reading opens
the directory once and every file relative to it, so the files read belong
to one index even while another process replaces it. The directory must
resolve inside the dataset root, and each file is opened with ``O_NOFOLLOW``
and must be a regular file (a FIFO is refused, never waited on); ``events/``
must resolve inside the root before anything is written into it.
"""

from __future__ import annotations

import mmap
import os
import shlex
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..format import (
    EVENT_FIELDS,
    FormatError,
    atomic_write_json,
    commit_dir,
    dataset_dir,
    fsync_dir,
    open_regular,
    resolve_inside,
)
from ..format.files import loads_json

__all__ = ["INDEX_DIR", "INDEX_VERSION", "LEGACY_VERSION", "IndexSource", "IndexMeta", "check_derived",
           "legacy_derived", "read_index", "write_index", "build_command", "index_dir"]

INDEX_DIR = "events/index"
INDEX_VERSION = 2
LEGACY_VERSION = 1
META_NAME = "meta.json"
MAX_META_BYTES = 256 << 20


@dataclass(frozen=True)
class IndexSource:
    """The manifest state an index was built from."""

    logs: tuple[str, ...]
    num_episodes: int
    num_rows: int

    @classmethod
    def of(cls, manifest: Any) -> IndexSource:
        """The state of a :class:`~torchrl_ext.format.Manifest`."""
        return cls(tuple(manifest.event_logs), int(manifest.num_episodes), int(manifest.num_rows))

    def to_json(self) -> dict[str, Any]:
        return {"logs": list(self.logs), "num_episodes": self.num_episodes, "num_rows": self.num_rows}


@dataclass(frozen=True)
class IndexMeta:
    """The content of ``meta.json`` (for version 1: ``source`` None, ``derived`` parsed from its strings)."""

    version: int
    num_events: int
    names: list[str]
    source: IndexSource | None
    derived: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"index_version": self.version, "num_events": self.num_events, "names": self.names,
                "source": None if self.source is None else self.source.to_json(), "derived": self.derived}


def _str_list(obj: Any) -> bool:
    return isinstance(obj, list) and all(isinstance(s, str) for s in obj)


def _key_list(obj: Any) -> bool:
    return _str_list(obj) and len(obj) > 0 and all(s and "/" not in s for s in obj)


def check_derived(obj: Any, where: str, fix: str = "rebuild the index") -> list[dict[str, Any]]:
    """Validates a ``derived`` list read from disk; ``FormatError`` naming ``where`` otherwise."""
    if not isinstance(obj, list):
        raise FormatError(f"{where}: `derived` must be a list, got {obj!r}; {fix}")
    out = []
    for d in obj:
        ok = isinstance(d, Mapping) and _key_list(d.get("key"))
        if ok and d.get("kind") == "column":
            ok = set(d) == {"kind", "prefix", "key"} and isinstance(d["prefix"], str) and bool(d["prefix"])
        elif ok and d.get("kind") == "counters":
            ok = set(d) == {"kind", "key"}
        else:
            ok = False
        if not ok:
            raise FormatError(f"{where}: derivation {d!r} is not {{'kind': 'column', 'prefix': str, 'key': "
                              f"[str, ...]}} or {{'kind': 'counters', 'key': [str, ...]}}; {fix}")
        out.append(dict(d))
    return out


def legacy_derived(tags: Any, where: str, fix: str = "rebuild the index") -> list[dict[str, Any]]:
    """Derivations of a version-1 index: ``"column:<prefix>=<a/b>"`` and ``"counters:<a/b>"`` strings.

    The key of a column tag is the part after the last ``=`` (keys hold no
    ``=``), so a prefix containing ``=`` is recovered.
    """
    if not _str_list(tags):
        raise FormatError(f"{where}: `derived` of an index_version 1 must be a list of str, got {tags!r}")
    out: list[dict[str, Any]] = []
    for tag in tags:
        kind, _, spec = tag.partition(":")
        if kind == "column" and "=" in spec:
            prefix, _, key = spec.rpartition("=")
            out.append({"kind": "column", "prefix": prefix, "key": key.split("/")})
        elif kind == "counters" and spec:
            out.append({"kind": "counters", "key": spec.split("/")})
        else:
            raise FormatError(f"{where}: derivation {tag!r} of an index_version 1 is neither "
                              f"'column:<prefix>=<key>' nor 'counters:<key>'; {fix}")
    return check_derived(out, where, fix)


def _parse_meta(raw: bytes, where: str, fix: str) -> IndexMeta:
    try:
        meta = loads_json(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise FormatError(f"{where}: not UTF-8 JSON ({err}); {fix}") from err
    if not isinstance(meta, dict):
        raise FormatError(f"{where}: expected a JSON object, got {type(meta).__name__}; {fix}")
    version = meta.get("index_version")
    if version not in (INDEX_VERSION, LEGACY_VERSION):
        raise FormatError(f"{where}: expected index_version {INDEX_VERSION} (or {LEGACY_VERSION}), got "
                          f"{version!r}; {fix}")
    n, names = meta.get("num_events"), meta.get("names")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise FormatError(f"{where}: `num_events` must be an int >= 0, got {n!r}; {fix}")
    if not _str_list(names) or names != sorted(set(names)):
        raise FormatError(f"{where}: `names` must be a sorted list of distinct str; {fix}")
    if version == LEGACY_VERSION:
        return IndexMeta(version, n, names, None, legacy_derived(meta.get("derived", []), where, fix))
    src = meta.get("source")
    source = None
    if src is not None:
        ints = [src.get(k) for k in ("num_episodes", "num_rows")] if isinstance(src, dict) else [None]
        if (not isinstance(src, dict) or set(src) != {"logs", "num_episodes", "num_rows"}
                or not _str_list(src["logs"]) or not all(isinstance(v, int) and v >= 0 for v in ints)):
            raise FormatError(f"{where}: `source` must be {{'logs': [str, ...], 'num_episodes': int, "
                              f"'num_rows': int}} or null, got {src!r}; {fix}")
        source = IndexSource(tuple(src["logs"]), src["num_episodes"], src["num_rows"])
    return IndexMeta(version, n, names, source, check_derived(meta.get("derived"), where, fix))


def _read_npy(dfd: int, name: str, dtype: type, n: int, use_mmap: bool, where: str, fix: str) -> np.ndarray:
    with open_regular(name, follow=False, dir_fd=dfd, label=f"{where}/{name}") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, found = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, found = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"npy format {version} is not 1.0 or 2.0")
        except ValueError as err:
            raise FormatError(f"{where}/{name}: not a readable .npy file ({err}); {fix}") from err
        if found != np.dtype(dtype) or shape != (n,):
            raise FormatError(f"{where}/{name}: expected {np.dtype(dtype).name} [{n}], got {found} {list(shape)}; "
                              f"{fix}")
        offset, size = f.tell(), os.fstat(f.fileno()).st_size
        need = offset + n * np.dtype(dtype).itemsize
        if size != need:
            raise FormatError(f"{where}/{name}: expected {need} bytes for {n} events, found {size}; rebuild "
                              "the index")
        if not use_mmap or n == 0:
            return np.fromfile(f, dtype=dtype, count=n)
        return np.frombuffer(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), dtype=dtype, count=n,
                             offset=offset)


def build_command(root: str | os.PathLike, flags: str = "") -> str:
    """The shell command that builds and saves the index of ``root`` (``flags``: derivation options)."""
    return f"torchrl-ext events {shlex.quote(str(root))} --build{flags}"


def index_dir(root: str | os.PathLike) -> Path:
    """``<root>/events/index``, refused (``FormatError``) if it resolves outside ``root``."""
    return resolve_inside(root, INDEX_DIR, f"{Path(root) / INDEX_DIR}")


def read_index(root: str | os.PathLike, *, use_mmap: bool = True) -> tuple[IndexMeta, dict[str, np.ndarray]]:
    """Reads a saved index: its meta and arrays (read-only memory maps unless ``use_mmap=False``).

    Raises:
        FileNotFoundError: there is no index.
        FormatError: a file is corrupt or inconsistent with ``meta.json``.
    """
    d = index_dir(root)
    fix = f"rebuild it with: {build_command(root)}"
    dfd = os.open(d, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        with open_regular(META_NAME, follow=False, dir_fd=dfd, label=str(d / META_NAME)) as f:
            raw = f.read(MAX_META_BYTES + 1)
        if len(raw) > MAX_META_BYTES:
            raise FormatError(f"{d / META_NAME}: larger than {MAX_META_BYTES} bytes; {fix}")
        meta = _parse_meta(raw, str(d / META_NAME), fix)
        arrays = {k: _read_npy(dfd, f"{k}.npy", dt, meta.num_events, use_mmap, str(d), fix)
                  for k, dt in EVENT_FIELDS}
    finally:
        os.close(dfd)
    name_id = arrays["name_id"]
    if meta.num_events and (int(name_id[0]) < 0 or int(name_id[-1]) >= len(meta.names)):
        raise FormatError(f"{d}/name_id.npy: ids run from {int(name_id[0])} to {int(name_id[-1])}, expected "
                          f"sorted ids in [0, {len(meta.names)}); {fix}")
    return meta, arrays


def _write_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "xb") as f:
        np.save(f, array, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def write_index(root: str | os.PathLike, meta: IndexMeta, arrays: Mapping[str, np.ndarray]) -> Path:
    """Writes ``<root>/events/index/`` atomically; returns its path.

    Two processes writing at once both succeed; the index left is one of theirs.
    """
    final = dataset_dir(root, os.path.dirname(INDEX_DIR)) / os.path.basename(INDEX_DIR)
    tmp = final.parent / f".tmp-index-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        for k, dt in EVENT_FIELDS:
            _write_npy(tmp / f"{k}.npy", np.ascontiguousarray(arrays[k], dtype=dt))
        atomic_write_json(tmp / META_NAME, meta.to_json())
        fsync_dir(tmp)
        _swap_in(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _swap_in(tmp: Path, final: Path) -> None:
    """Makes the written directory ``tmp`` the index: ``final`` is a symlink replaced atomically.

    The directory is renamed to ``index-<hex>`` and a new symlink is renamed over
    ``final`` (``rename(2)`` replaces a symlink atomically, a non-empty directory
    not at all), so at every instant ``final`` names a complete index. The index
    it replaced is removed afterwards. A legacy ``final`` that is a directory is
    moved aside first: the only moment a reader could find no index.
    """
    parent = final.parent
    target = parent / f"index-{uuid.uuid4().hex[:12]}"
    commit_dir(tmp, target)
    link = parent / f".index-link-{uuid.uuid4().hex[:12]}"
    os.symlink(target.name, link)
    old = None
    if final.is_symlink():
        old = parent / os.readlink(final)
    elif final.is_dir():
        old = parent / f".old-index-{uuid.uuid4().hex[:12]}"
        os.rename(final, old)
    os.replace(link, final)
    fsync_dir(parent)
    # compared resolved on both sides: with a relative root `parent` is relative, `old.resolve()` is not
    if old is not None and old.resolve() != target.resolve() and parent.resolve() in old.resolve().parents:
        shutil.rmtree(old, ignore_errors=True)
    _remove_stale(parent, keep=target)


def _remove_stale(parent: Path, keep: Path, age: float = 3600.0) -> None:
    """Removes index directories left by builds killed more than ``age`` seconds ago."""
    import time

    now = time.time()
    for d in [*parent.glob("index-*"), *parent.glob(".tmp-index-*"), *parent.glob(".old-index-*")]:
        try:
            if d != keep and d.is_dir() and not d.is_symlink() and now - d.stat().st_mtime > age:
                shutil.rmtree(d, ignore_errors=True)
        except FileNotFoundError:
            pass

