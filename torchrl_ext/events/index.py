"""``EventIndex``: every event of a dataset as flat numpy arrays, grouped by name.

On disk (``<root>/events/index/``, beside the shards, never inside them)::

    meta.json     {"index_version": 1, "names": [...], "logs": [...], "num_events": N,
                   "derived": [...]}   names sorted; logs = manifest.event_logs it was built from
    name_id.npy   int32  [N]  index into ``names``
    episode.npy   int64  [N]
    step.npy      int64  [N]  step inside the episode
    row.npy       int64  [N]  global row of the step
    value.npy     float64[N]

Events are sorted by ``(name_id, row)``, i.e. by name, then in dataset order
(episode, step); events of one name are the contiguous range
``offsets[k]:offsets[k + 1]``. The directory is written under a temporary name
and renamed into place, so a reader sees the old index or the new one.

Besides the writer's event logs, events can be derived from the data after the
fact (:meth:`EventIndex.from_column`, :meth:`EventIndex.from_counters`) and
merged in (:meth:`EventIndex.merge`); the shards are never rewritten.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..format import fsync_dir, read_manifest

__all__ = ["EventIndex", "INDEX_DIR", "INDEX_VERSION"]

logger = logging.getLogger(__name__)

INDEX_DIR = "events/index"
INDEX_VERSION = 1
_ARRAYS = (("name_id", np.int32), ("episode", np.int64), ("step", np.int64),
           ("row", np.int64), ("value", np.float64))


def _key(key: str | Sequence[str]) -> tuple[str, ...]:
    return (key,) if isinstance(key, str) else tuple(key)


class EventIndex:
    """Events grouped by name, in dataset order inside a name.

    Attributes:
        names: sorted name vocabulary (``numpy`` str array).
        name_id, episode, step, row, value: one entry per event.
        offsets: ``int64 [len(names) + 1]``; events of ``names[k]`` are
            ``offsets[k]:offsets[k + 1]``.
    """

    def __init__(self, names: np.ndarray, name_id: np.ndarray, episode: np.ndarray, step: np.ndarray,
                 row: np.ndarray, value: np.ndarray, *, logs: Sequence[str] = (),
                 derived: Sequence[str] = ()) -> None:
        self.names = np.asarray(names, dtype=str)
        self.name_id = name_id
        self.episode = episode
        self.step = step
        self.row = row
        self.value = value
        self.logs = list(logs)
        self.derived = list(derived)
        self.offsets = np.searchsorted(name_id, np.arange(len(self.names) + 1)).astype(np.int64)

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_arrays(cls, names: Sequence[str], name_id: np.ndarray, episode: np.ndarray,
                    step: np.ndarray, row: np.ndarray, value: np.ndarray | None = None, *,
                    logs: Sequence[str] = (), derived: Sequence[str] = ()) -> EventIndex:
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
            raise ValueError(f"`name_id` must be in [0, {len(names)}), got values up to {name_id.max()}")
        vocab, remap = np.unique(names, return_inverse=True)
        gid = remap.reshape(-1).astype(np.int64)[name_id] if n else name_id
        # (name, row) order == (name, episode, step) order; one int64 key sorts fastest
        span = int(row.max()) + 1 if n else 1
        order = np.argsort(gid * span + row, kind="stable")
        return cls(vocab, gid[order].astype(np.int32), episode[order], step[order], row[order],
                   value[order], logs=logs, derived=derived)

    @classmethod
    def build(cls, root: str | os.PathLike, *, columns: Mapping[str, str | Sequence[str]] | None = None,
              counters: Sequence[str | Sequence[str]] = (), save: bool = True) -> EventIndex:
        """Builds the index from the writer's event logs (``manifest.event_logs``).

        Args:
            root: dataset directory.
            columns: ``{prefix: key}``: also derive sign events ``<prefix>:+1`` /
                ``<prefix>:-1`` from these columns (:meth:`from_column`), e.g.
                ``{"reward": ("next", "reward")}``.
            counters: key prefixes of cumulative counter columns to turn into
                events (:meth:`from_counters`), e.g. ``[("info", "stats")]``.
            save: also write it to ``<root>/events/index/``. :meth:`open`
                rebuilds a stale index with the same ``columns`` and ``counters``.

        Examples:
            >>> from torchrl_ext.synthetic import write_synthetic
            >>> import tempfile
            >>> root = write_synthetic(tempfile.mkdtemp() + "/ds", episodes=2, length=5, obs_shape=(1,))
            >>> EventIndex.build(root, columns={"reward": ("next", "reward")}).counts()
            {'reward:+1': 9, 'reward:-1': 0}
        """
        index = cls._from_logs(Path(root))
        if columns or counters:
            from ..storages import ShardedStorage  # the storage is needed only to derive events

            storage = ShardedStorage(root)
            derived = [cls.from_column(storage, key, prefix=prefix) for prefix, key in (columns or {}).items()]
            derived += [cls.from_counters(storage, _key(prefix)) for prefix in counters]
            index = index.merge(*derived)
        if save:
            index.save(root)
        return index

    @classmethod
    def _from_logs(cls, root: Path) -> EventIndex:
        root = Path(root)
        manifest = read_manifest(root)
        parts: list[dict[str, np.ndarray]] = []
        names: list[str] = []
        for rel in manifest.event_logs:
            path = root / rel
            try:
                with np.load(path, allow_pickle=False) as z:
                    part = {k: z[k] for k in ("names", "name_id", "episode", "step", "row", "value")}
            except (OSError, KeyError, ValueError) as err:
                raise ValueError(f"event log {path} is unreadable ({err}); expected an npz with names, "
                                 "name_id, episode, step, row, value; rebuild the dataset's events") from err
            part["name_id"] = part["name_id"].astype(np.int64) + len(names)
            names.extend(str(s) for s in part["names"])
            parts.append(part)
        cat = {k: (np.concatenate([p[k] for p in parts]) if parts else np.zeros(0, dt))
               for k, dt in _ARRAYS}
        keep = cat["episode"] < manifest.num_episodes
        index = cls.from_arrays(names, *(cat[k][keep] for k, _ in _ARRAYS), logs=manifest.event_logs)
        logger.info("built event index of %s: %d events, %d names", root, len(index), len(index.names))
        return index

    @classmethod
    def load(cls, root: str | os.PathLike, *, mmap: bool = True) -> EventIndex:
        """Loads ``<root>/events/index/`` (arrays memory-mapped unless ``mmap=False``)."""
        d = Path(root) / INDEX_DIR
        try:
            meta = json.loads((d / "meta.json").read_text("utf-8"))
        except FileNotFoundError as err:
            raise FileNotFoundError(f"no event index at {d}; build it with EventIndex.build({str(root)!r})"
                                    ) from err
        if not isinstance(meta, dict) or meta.get("index_version") != INDEX_VERSION:
            raise ValueError(f"{d}/meta.json: expected index_version {INDEX_VERSION}, got "
                             f"{meta.get('index_version') if isinstance(meta, dict) else meta!r}; "
                             "rebuild with EventIndex.build(root)")
        arrays = {}
        for k, dt in _ARRAYS:
            a = np.load(d / f"{k}.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
            if a.dtype != dt or a.shape != (meta["num_events"],):
                raise ValueError(f"{d}/{k}.npy: expected {np.dtype(dt).name} [{meta['num_events']}], "
                                 f"got {a.dtype} {list(a.shape)}; rebuild with EventIndex.build(root)")
            arrays[k] = a
        return cls(np.asarray(meta["names"], dtype=str), **arrays, logs=meta.get("logs", []),
                   derived=meta.get("derived", []))

    @classmethod
    def open(cls, root: str | os.PathLike) -> EventIndex:
        """Loads the saved index, building (and saving) it first if missing or older than the logs."""
        root = Path(root)
        try:
            index = cls.load(root)
        except FileNotFoundError:
            return cls.build(root)
        if index.logs != read_manifest(root).event_logs:
            logger.info("event index of %s is stale; rebuilding", root)
            columns = {}
            counters = []
            for tag in index.derived:
                kind, _, spec = tag.partition(":")
                if kind == "column":
                    prefix, _, key = spec.partition("=")
                    columns[prefix] = tuple(key.split("/"))
                elif kind == "counters":
                    counters.append(tuple(spec.split("/")))
            return cls.build(root, columns=columns, counters=counters)
        return index

    @classmethod
    def from_column(cls, storage, key: str | tuple[str, ...] = ("next", "reward"), *,
                    prefix: str = "reward", chunk_rows: int = 1 << 20) -> EventIndex:
        """Events from the sign of a scalar column: ``<prefix>:+1`` / ``<prefix>:-1``.

        Args:
            storage: a :class:`~torchrl_ext.storages.ShardedStorage`.
            key: the column (one value per row).
            prefix: event name prefix.
            chunk_rows: rows read at a time.
        """
        key = _key(key)
        first, length = storage.episode_bounds
        ep_of_row = np.repeat(np.arange(len(first), dtype=np.int64), length)
        ids, rows, vals = [], [], []
        for lo in range(0, len(storage), chunk_rows):
            hi = min(lo + chunk_rows, len(storage))
            col = storage.get(slice(lo, hi)).get(key).numpy().reshape(hi - lo, -1)
            if col.shape[1] != 1:
                raise ValueError(f"`key` {key} must hold one value per row, found per-row shape {col.shape[1:]}")
            v = col[:, 0].astype(np.float64)
            hit = np.flatnonzero(v != 0)
            ids.append((v[hit] < 0).astype(np.int64))
            rows.append(hit + lo)
            vals.append(v[hit])
        row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        episode = ep_of_row[row]
        return cls.from_arrays([f"{prefix}:+1", f"{prefix}:-1"],
                               np.concatenate(ids) if ids else np.zeros(0, np.int64),
                               episode, row - first[episode], row, np.concatenate(vals) if vals else None,
                               derived=[f"column:{prefix}={'/'.join(key)}"])

    @classmethod
    def from_counters(cls, storage, prefix: tuple[str, ...] = ("info", "stats")) -> EventIndex:
        """Events from cumulative per-step counters (e.g. Minecraft contractor ``stats``).

        Every column under ``prefix`` is a counter named by its last key part. A
        positive delta ``c[t] - c[t - 1]`` inside an episode is an event of that
        name at step ``t`` whose value is the delta. Step 0 has no previous value
        and yields no event.
        """
        prefix = _key(prefix)
        keys = [c.key for c in storage.manifest.schema if c.key[: len(prefix)] == prefix]
        if not keys:
            raise ValueError(f"no column under {'/'.join(prefix)!r}; found columns "
                             f"{['/'.join(c.key) for c in storage.manifest.schema]}")
        first, length = storage.episode_bounds
        ep_of_row = np.repeat(np.arange(len(first), dtype=np.int64), length)
        is_first = np.zeros(len(storage), bool)
        is_first[first[length > 0]] = True
        data = storage.get(slice(0, len(storage)))
        ids, rows, vals = [], [], []
        for k, key in enumerate(keys):
            c = data.get(key).numpy().reshape(len(storage)).astype(np.float64)
            delta = np.diff(c, prepend=c[:1])
            hit = np.flatnonzero((delta > 0) & ~is_first)
            ids.append(np.full(len(hit), k, np.int64))
            rows.append(hit)
            vals.append(delta[hit])
        row = np.concatenate(rows)
        episode = ep_of_row[row]
        return cls.from_arrays([key[-1] for key in keys], np.concatenate(ids), episode,
                               row - first[episode], row, np.concatenate(vals),
                               derived=[f"counters:{'/'.join(prefix)}"])

    def merge(self, *others: EventIndex) -> EventIndex:
        """One index holding the events of ``self`` and ``others``."""
        parts = [self, *others]
        names = np.concatenate([p.names for p in parts])
        shift = np.cumsum([0] + [len(p.names) for p in parts[:-1]])
        cat = {k: np.concatenate([np.asarray(getattr(p, k)) for p in parts]) for k, _ in _ARRAYS}
        cat["name_id"] = np.concatenate([np.asarray(p.name_id, np.int64) + s for p, s in zip(parts, shift)])
        return EventIndex.from_arrays(names, *(cat[k] for k, _ in _ARRAYS), logs=self.logs,
                                      derived=[d for p in parts for d in p.derived])

    # ------------------------------------------------------------ saving / querying
    def save(self, root: str | os.PathLike) -> Path:
        """Writes ``<root>/events/index/`` atomically (temp dir + rename)."""
        final = Path(root) / INDEX_DIR
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".tmp-index-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            for k, dt in _ARRAYS:
                np.save(tmp / f"{k}.npy", np.ascontiguousarray(getattr(self, k), dtype=dt))
            meta = {"index_version": INDEX_VERSION, "names": [str(s) for s in self.names],
                    "logs": self.logs, "derived": self.derived, "num_events": len(self)}
            (tmp / "meta.json").write_text(json.dumps(meta), "utf-8")
            fsync_dir(tmp)
            old = None
            if final.exists():
                old = final.parent / f".old-index-{uuid.uuid4().hex[:8]}"
                os.rename(final, old)
            os.rename(tmp, final)
            fsync_dir(final.parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def match(self, event_regex: str) -> np.ndarray:
        """Ids of the names ``re.match(event_regex, name)`` accepts (anchored at the start only)."""
        try:
            pattern = re.compile(event_regex)
        except (re.error, TypeError) as err:
            raise ValueError(f"`event_regex` must be a valid Python regular expression, got "
                             f"{event_regex!r} ({err})") from err
        return np.asarray([i for i, n in enumerate(self.names) if pattern.match(str(n))], dtype=np.int64)

    def counts(self) -> dict[str, int]:
        """Number of events per name."""
        return {str(n): int(c) for n, c in zip(self.names, np.diff(self.offsets))}

    def __len__(self) -> int:
        return int(self.name_id.shape[0])

    def __repr__(self) -> str:
        return f"EventIndex(events={len(self)}, names={len(self.names)})"
