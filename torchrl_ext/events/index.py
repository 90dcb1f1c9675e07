"""``EventIndex``: every event of a dataset as flat numpy arrays, grouped by name.

Events are sorted by ``(name_id, row)``, i.e. by name, then in dataset order
(episode, step); events of one name are the contiguous range
``offsets[k]:offsets[k + 1]``.

Building and reading are separate steps. :meth:`EventIndex.build` reads the
writer's event logs (through :func:`torchrl_ext.format.read_event_log`),
optionally derives events from stored columns (:mod:`.derive`), and saves the
result to ``<root>/events/index/`` (specified in :mod:`.index_file`); so does
``torchrl-ext events ROOT --build``. :meth:`EventIndex.open`, used by the
sampler and the dataset, only reads: a missing or stale index is built in
memory with a warning naming the command that saves it, or refused with
``build_missing="error"``. Many processes (DDP ranks, DataLoader workers) may
open the same dataset at once; none of them writes.

:meth:`open` and :meth:`load` also take a URL (``gs://bucket/prefix``) and read
the index pushed with the dataset from its local cache; an index is saved only
into a dataset directory (built where the dataset is written, then pushed).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..format import EVENT_FIELDS, FormatError, read_event_log, read_manifest
from ..progress import track
from ..remote.cache import ShardCache
from ..remote.roots import dataset_root
from ..remote.urls import is_remote, parse_url
from ..validation import one_of, regex, user_path
from .derive import (
    CHUNK_ROWS,
    check_columns_exist,
    column_events,
    counter_events,
    derivation_flags,
    derivations,
)
from .index_file import (
    INDEX_DIR,
    INDEX_VERSION,
    LEGACY_VERSION,
    IndexMeta,
    IndexSource,
    build_command,
    read_index,
    write_index,
)

__all__ = ["EventIndex", "INDEX_DIR", "BUILD_MISSING"]

logger = logging.getLogger(__name__)

BUILD_MISSING = ("memory", "error")
"""What :meth:`EventIndex.open` does with a missing or stale index."""


def _key(key: str | Sequence[str]) -> tuple[str, ...]:
    return (key,) if isinstance(key, str) else tuple(key)


class EventIndex:
    """Events grouped by name, in dataset order inside a name.

    Attributes:
        names: sorted name vocabulary (``numpy`` str array).
        name_id, episode, step, row, value: one entry per event.
        offsets: ``int64 [len(names) + 1]``; events of ``names[k]`` are
            ``offsets[k]:offsets[k + 1]``.
        source: the dataset state it was built from (None if not built from a dataset).
        derived: the derivations merged in (dicts, see :mod:`torchrl_ext.events.derive`).
    """

    def __init__(self, names: np.ndarray, name_id: np.ndarray, episode: np.ndarray, step: np.ndarray,
                 row: np.ndarray, value: np.ndarray, *, source: IndexSource | None = None,
                 derived: Sequence[Mapping[str, Any]] = ()) -> None:
        self.names = np.asarray(names, dtype=str)
        self.name_id = name_id
        self.episode = episode
        self.step = step
        self.row = row
        self.value = value
        self.source = source
        self.derived = [dict(d) for d in derived]
        # values of name_id's own dtype: no cast of (possibly memory-mapped) name_id
        ids = np.arange(len(self.names) + 1, dtype=np.asarray(name_id).dtype)
        self.offsets = np.searchsorted(name_id, ids).astype(np.int64)

    @property
    def logs(self) -> list[str]:
        """The event logs (``manifest.event_logs``) it was built from."""
        return [] if self.source is None else list(self.source.logs)

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_arrays(cls, names: Sequence[str], name_id: np.ndarray, episode: np.ndarray,
                    step: np.ndarray, row: np.ndarray, value: np.ndarray | None = None, *,
                    source: IndexSource | None = None,
                    derived: Sequence[Mapping[str, Any]] = ()) -> EventIndex:
        """Sorts arbitrary event arrays into an index (names need not be sorted or unique)."""
        names = np.asarray(names, dtype=str)
        name_id = np.asarray(name_id, dtype=np.int64)
        n = name_id.shape[0]
        value = np.ones(n) if value is None else np.asarray(value, dtype=np.float64)
        episode, step, row = (np.asarray(a, dtype=np.int64) for a in (episode, step, row))
        if not all(a.shape == (n,) for a in (episode, step, row, value)):
            raise ValueError("event arrays must all be 1-D of the same length, got shapes "
                             f"{[a.shape for a in (name_id, episode, step, row, value)]}")
        if n and (name_id.min() < 0 or name_id.max() >= len(names)):
            raise ValueError(f"`name_id` must be in [0, {len(names)}), got values from {name_id.min()} to "
                             f"{name_id.max()}")
        if n and row.min() < 0:
            raise ValueError(f"`row` must be >= 0, got {row.min()}")
        vocab, remap = np.unique(names, return_inverse=True)
        gid = remap.reshape(-1).astype(np.int64)[name_id] if n else name_id
        order = _name_row_order(gid, row, len(vocab))
        return cls(vocab, gid[order].astype(np.int32), episode[order], step[order], row[order],
                   value[order], source=source, derived=derived)

    @classmethod
    def build(cls, root: str | os.PathLike, *, columns: Mapping[str, str | Sequence[str]] | None = None,
              counters: Sequence[str | Sequence[str]] = (), save: bool = True) -> EventIndex:
        """Builds the index from the writer's event logs (``manifest.event_logs``) and saves it.

        Args:
            root: dataset directory; a URL (or its cache) only with ``save=False``.
            columns: ``{prefix: key}``: also derive sign events ``<prefix>:+1`` /
                ``<prefix>:-1`` from these scalar columns (:meth:`from_column`),
                e.g. ``{"reward": ("next", "reward")}``.
            counters: key prefixes of cumulative counter columns to turn into
                events (:meth:`from_counters`), e.g. ``[("info", "stats")]``.
                Derivations read only the columns they name, in chunks of
                rows, never the rest of a row (frames).
            save: write it to ``<root>/events/index/`` (with ``columns`` and
                ``counters``, so a rebuild reproduces it). Only this and the
                command line write an index.

        Raises:
            TypeError, ValueError: ``columns`` or ``counters`` is malformed or
                names no column of the dataset; or ``save=True`` for a remote dataset.
            FormatError: an event log is corrupt.

        Examples:
            >>> from torchrl_ext.synthetic import write_synthetic
            >>> import tempfile
            >>> root = write_synthetic(tempfile.mkdtemp() + "/ds", episodes=2, length=5, obs_shape=(1,))
            >>> EventIndex.build(root, columns={"reward": ("next", "reward")}).counts()
            {'reward:+1': 9, 'reward:-1': 0}
            >>> EventIndex.load(root).derived
            [{'kind': 'column', 'prefix': 'reward', 'key': ['next', 'reward']}]
        """
        if save and is_remote(root):
            raise _cannot_save(str(root))
        root = dataset_root(root, "root")
        url = ShardCache.read_marker(root)
        if save and url is not None:
            raise _cannot_save(url)
        derived = derivations(columns, counters)
        manifest = read_manifest(root)
        check_columns_exist(derived, manifest)
        index = cls._from_logs(root, manifest)
        if derived:
            from ..storages import (
                ShardedStorage,  # the storage is needed only to derive events
            )

            # nothing copied into RAM at open, no decoded chunk kept: each derivation reads its own columns
            storage = ShardedStorage(root, cache_bytes=0, decode_cache_bytes=0)
            parts = []
            for d in derived:
                key = tuple(d["key"])
                arrays = (column_events(storage, key, d["prefix"], num_rows=manifest.num_rows)
                          if d["kind"] == "column" else counter_events(storage, key, num_rows=manifest.num_rows))
                parts.append(cls._from_derived(arrays, d))
            index = index.merge(*parts)
        if save:
            path = index.save(root)
            logger.info("saved event index %s: %d events, %d names", path, len(index), len(index.names))
        return index

    @classmethod
    def _from_derived(cls, arrays: dict[str, Any], derivation: Mapping[str, Any]) -> EventIndex:
        return cls.from_arrays(arrays["names"], arrays["name_id"], arrays["episode"], arrays["step"],
                               arrays["row"], arrays["value"], derived=[derivation])

    @classmethod
    def _from_logs(cls, root: Path, manifest: Any) -> EventIndex:
        parts: list[dict[str, np.ndarray]] = []
        names: list[str] = []
        for rel in track(manifest.event_logs, "build event index", unit="log"):
            part = read_event_log(root / rel, root=root)
            part["name_id"] = part["name_id"].astype(np.int64) + len(names)
            names.extend(str(s) for s in part["names"])
            parts.append(part)
        cat = {k: (np.concatenate([p[k] for p in parts]) if parts else np.zeros(0, dt)) for k, dt in EVENT_FIELDS}
        keep = cat["episode"] < manifest.num_episodes
        if not keep.all():
            cat = {k: v[keep] for k, v in cat.items()}
        index = cls.from_arrays(names, *(cat[k] for k, _ in EVENT_FIELDS), source=IndexSource.of(manifest))
        logger.info("built event index of %s: %d events, %d names", root, len(index), len(index.names))
        return index

    @classmethod
    def load(cls, root: str | os.PathLike, *, mmap: bool = True) -> EventIndex:
        """Loads ``<root>/events/index/`` as saved (arrays memory-mapped unless ``mmap=False``).

        It does not compare the index with the dataset; :meth:`open` does.
        ``root`` may be a URL: the index pushed with the dataset is read from its cache.

        Raises:
            FileNotFoundError: there is no saved index (the message says how to build it).
            FormatError: the saved index is corrupt.
        """
        root = dataset_root(root, "root")
        try:
            meta, arrays = read_index(root, use_mmap=mmap)
        except FileNotFoundError as err:
            url = ShardCache.read_marker(root)
            if url is not None:
                raise FileNotFoundError(f"no event index at {url}{INDEX_DIR}; {_remote_fix()}") from err
            raise FileNotFoundError(f"no event index at {Path(root) / INDEX_DIR}; build it with: "
                                    f"{build_command(root)} (or EventIndex.build(root))") from err
        return cls._from_saved(meta, arrays)

    @classmethod
    def _from_saved(cls, meta: IndexMeta, arrays: dict[str, np.ndarray]) -> EventIndex:
        return cls(np.asarray(meta.names, dtype=str), **arrays, source=meta.source, derived=meta.derived)

    @classmethod
    def open(cls, root: str | os.PathLike, *, build_missing: str = "memory") -> EventIndex:
        """The saved index of ``root`` if it is up to date; never writes.

        Args:
            root: dataset directory, or a URL (``gs://bucket/prefix``) read through its cache.
            build_missing: for a missing or stale index (built from other event
                logs or rows than the manifest lists, or by an older release):
                ``"memory"`` builds it in memory with the saved derivations and
                warns with the command that saves it; ``"error"`` raises.

        Raises:
            FileNotFoundError: ``build_missing="error"`` and no index is saved.
            FormatError: ``build_missing="error"`` and the index is stale; or
                the saved index is corrupt.
        """
        one_of(build_missing, "build_missing", BUILD_MISSING)
        root = dataset_root(root, "root")
        manifest = read_manifest(root)
        try:
            meta, arrays = read_index(root)
        except FileNotFoundError:
            problem, derived = "missing", []
        else:
            current = IndexSource.of(manifest)
            if meta.version == LEGACY_VERSION:
                problem = f"stale (written by an older release, index_version {LEGACY_VERSION})"
            elif meta.source != current:
                problem = f"stale (built from {_describe(meta.source)}; the dataset now has {_describe(current)})"
            else:
                return cls._from_saved(meta, arrays)
            derived = meta.derived
        url = ShardCache.read_marker(root)
        flags = derivation_flags(derived)
        fix = f"build it with: {build_command(root, flags)}" if url is None else _remote_fix(flags)
        if build_missing == "error":
            error = FileNotFoundError if problem == "missing" else FormatError
            raise error(f"event index of {url or root} is {problem}; {fix}")
        warnings.warn(f"event index of {url or root} is {problem}: built it in memory for this process (nothing "
                      f"is written); save it once so readers load it: {fix}", stacklevel=2)
        return cls.build(root, **derivation_arguments(derived), save=False)

    @classmethod
    def rebuild(cls, root: str | os.PathLike, *, columns: Mapping[str, str | Sequence[str]] | None = None,
                counters: Sequence[str | Sequence[str]] | None = None) -> EventIndex:
        """Builds and saves the index again, with the saved index's derivations unless others are given.

        Passing ``columns={}`` (or ``counters=()``) drops derivations on purpose; a
        missing or unreadable saved index contributes none.
        """
        if is_remote(root):
            raise _cannot_save(str(root))
        if columns is None and counters is None:
            try:
                meta, _ = read_index(user_path(root, "root"))
                saved = derivation_arguments(meta.derived)
            except (FileNotFoundError, FormatError):
                saved = {"columns": {}, "counters": []}
            columns, counters = saved["columns"], saved["counters"]
        return cls.build(root, columns=columns or {}, counters=counters or ())

    @classmethod
    def from_column(cls, storage: Any, key: str | tuple[str, ...] = ("next", "reward"), *,
                    prefix: str = "reward", chunk_rows: int = CHUNK_ROWS) -> EventIndex:
        """Events from the sign of a scalar column: ``<prefix>:+1`` / ``<prefix>:-1``.

        Args:
            storage: a :class:`~torchrl_ext.storages.ShardedStorage`.
            key: the column (one value per row).
            prefix: event name prefix.
            chunk_rows: rows read at a time; no other column is read.
        """
        (d,) = derivations({prefix: key}, ())
        check_columns_exist([d], storage.manifest)
        return cls._from_derived(column_events(storage, _key(key), prefix, chunk_rows=chunk_rows), d)

    @classmethod
    def from_counters(cls, storage: Any, prefix: str | tuple[str, ...] = ("info", "stats"), *,
                      chunk_rows: int = CHUNK_ROWS) -> EventIndex:
        """Events from cumulative per-step counters (e.g. Minecraft contractor ``stats``).

        Every column under ``prefix`` is a counter named by its last key part. A
        positive delta ``c[t] - c[t - 1]`` inside an episode is an event of that
        name at step ``t`` whose value is the delta. Step 0 has no previous value
        and yields no event.
        """
        (d,) = derivations(None, [prefix])
        check_columns_exist([d], storage.manifest)
        return cls._from_derived(counter_events(storage, _key(prefix), chunk_rows=chunk_rows), d)

    def merge(self, *others: EventIndex) -> EventIndex:
        """One index holding the events of ``self`` and ``others`` (``self``'s source)."""
        parts = [self, *others]
        names = np.concatenate([p.names for p in parts])
        shift = np.cumsum([0] + [len(p.names) for p in parts[:-1]])
        cat = {k: np.concatenate([np.asarray(getattr(p, k)) for p in parts]) for k, _ in EVENT_FIELDS}
        cat["name_id"] = np.concatenate([np.asarray(p.name_id, np.int64) + s for p, s in zip(parts, shift)])
        return EventIndex.from_arrays(names, *(cat[k] for k, _ in EVENT_FIELDS), source=self.source,
                                      derived=[d for p in parts for d in p.derived])

    # ------------------------------------------------------------ saving / querying
    def save(self, root: str | os.PathLike) -> Path:
        """Writes ``<root>/events/index/`` atomically (see :mod:`.index_file`); returns its path."""
        if is_remote(root):
            raise _cannot_save(str(root))
        meta = IndexMeta(INDEX_VERSION, len(self), [str(s) for s in self.names], self.source, self.derived)
        return write_index(user_path(root, "root"), meta, {k: getattr(self, k) for k, _ in EVENT_FIELDS})

    def match(self, event_regex: str) -> np.ndarray:
        """Ids of the names ``re.match(event_regex, name)`` accepts (anchored at the start only)."""
        pattern = regex(event_regex, "event_regex")
        return np.asarray([i for i, n in enumerate(self.names) if pattern.match(str(n))], dtype=np.int64)

    def counts(self) -> dict[str, int]:
        """Number of events per name."""
        return {str(n): int(c) for n, c in zip(self.names, np.diff(self.offsets))}

    def __len__(self) -> int:
        return int(self.name_id.shape[0])

    def __repr__(self) -> str:
        return f"EventIndex(events={len(self)}, names={len(self.names)})"


def _name_row_order(gid: np.ndarray, row: np.ndarray, num_names: int) -> np.ndarray:
    """Stable argsort by ``(gid, row)``: (name, row) order is (name, episode, step) order.

    With at most 65536 names the name pass is numpy's 16-bit radix sort; rows
    already in order (a writer's logs usually are) skip the row pass.
    """
    if gid.shape[0] == 0:
        return np.zeros(0, np.int64)
    if num_names > 1 << 16:
        return np.argsort(gid * (int(row.max()) + 1) + row, kind="stable")
    g16 = gid.astype(np.uint16)
    if bool((row[1:] >= row[:-1]).all()):
        return np.argsort(g16, kind="stable")
    by_row = np.argsort(row, kind="stable")
    return by_row[np.argsort(g16[by_row], kind="stable")]


def _cannot_save(url: str) -> ValueError:
    return ValueError(f"`root` {parse_url(url, 'root').url} is a remote dataset, and an event index is saved only "
                      f"into a dataset directory; {_remote_fix()} (build(..., save=False) keeps it in memory)")


def _remote_fix(flags: str = "") -> str:
    return f"build it where the dataset is written ({build_command('ROOT', flags)}) and push it again"


def _describe(source: IndexSource | None) -> str:
    if source is None:
        return "an unrecorded dataset state"
    return f"{len(source.logs)} event logs, {source.num_episodes} episodes, {source.num_rows} rows"


def derivation_arguments(derived: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``columns=`` and ``counters=`` of :meth:`EventIndex.build` that reproduce saved derivations."""
    return {"columns": {d["prefix"]: tuple(d["key"]) for d in derived if d["kind"] == "column"},
            "counters": [tuple(d["key"]) for d in derived if d["kind"] == "counters"]}
