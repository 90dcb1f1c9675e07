"""ShardWriter: episodes in, rolling memmap shards + episode table + event logs out.

Crash safety: a shard is written into ``shards/.tmp-*`` and renamed into place;
the episode table and event log of the episodes it completes are written next;
the manifest is replaced atomically last. Only the manifest makes anything
visible, so a process killed at any moment leaves a dataset that opens with
every committed episode. ``ShardWriter.open`` removes leftovers and rewrites
the rows of an episode that was cut by a crash, then appends.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .episodes import EpisodeTable
from .format import (
    EPISODES_NAME,
    MANIFEST_NAME,
    Column,
    Key,
    Manifest,
    ShardInfo,
    column_path,
    read_manifest,
    validate_shards,
    write_manifest,
)
from .pending import PendingShard, flatten_episode

__all__ = ["ShardWriter", "DEFAULT_SHARD_BYTES", "lock_dataset"]

logger = logging.getLogger(__name__)

DEFAULT_SHARD_BYTES = 256 * 1024 * 1024
DONE_KEYS = ("done", "terminated", "truncated")
_OWNED = (("episode",), ("step",))
_REQUIRED = (("next", "reward"), ("next", "done"))
OBSERVATION_KEYS = (("observation",), ("pixels",))


@dataclass
class _Done:
    """A complete episode waiting for its rows to be committed."""

    episode: int
    first_row: int
    length: int
    has_final: bool
    metadata: dict[str, Any]
    events: list[tuple[int, str, float]]


def lock_dataset(root: Path, busy: str) -> int:
    """Takes the exclusive writer lock of a dataset directory; ``busy`` is the error text."""
    fd = os.open(root / ".writer.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RuntimeError(f"{root}: {busy}") from None
    return fd


class ShardWriter:
    """Writes episodes into a sharded memmap dataset.

    Use :meth:`create` for a new dataset and :meth:`open` to append to (or
    resume) an existing one. Episodes are TensorDicts ``[T]`` in TorchRL's TED
    layout. Observation-like keys (``observation``, ``pixels`` and any key
    present both at the root and under ``"next"``) are stored once; their
    ``"next"`` value at an episode's last step is kept as the final
    observation. ``("next", "terminated")`` defaults to ``("next", "done")``
    and ``("next", "truncated")`` to zeros when missing. The writer owns the
    ``episode`` and ``step`` columns.

    Example:
        >>> import tempfile, torch
        >>> from tensordict import TensorDict
        >>> from torchrl_ext import ShardWriter, ShardedStorage
        >>> root = tempfile.mkdtemp() + "/ds"
        >>> ep = TensorDict({"observation": torch.arange(3.0), "action": torch.zeros(3),
        ...     "next": {"reward": torch.ones(3, 1), "done": torch.tensor([[False], [False], [True]])}}, [3])
        >>> with ShardWriter.create(root, shard_rows=2) as w:
        ...     episode_id = w.add_episode(ep, metadata={"game": "demo"})
        >>> storage = ShardedStorage(root)
        >>> len(storage), storage[1]["next", "observation"].item(), storage[2]["next", "observation"].item()
        (3, 2.0, 0.0)
    """

    def __init__(self, root: Path, manifest: Manifest, table: EpisodeTable, lock_fd: int) -> None:
        self.root = root
        self._manifest = manifest
        self._table = table
        self._lock_fd = lock_fd
        self._pending: PendingShard | None = None
        self._done: list[_Done] = []
        self._superseded: list[str] = []
        self._prefix: tuple[ShardInfo, int] | None = None
        self._next_episode = manifest.num_episodes
        self._written_rows = manifest.num_rows  # global rows appended so far
        self._shard_bytes = DEFAULT_SHARD_BYTES
        self._closed = False

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        root: str | os.PathLike,
        *,
        shard_rows: int | None = None,
        shard_bytes: int | None = None,
        source: Mapping[str, Any] | None = None,
    ) -> ShardWriter:
        """Starts a new dataset at ``root`` (which must not hold one)."""
        root = Path(root)
        if shard_rows is not None and (not isinstance(shard_rows, int) or shard_rows <= 0):
            raise ValueError(f"`shard_rows` must be a positive int, got {shard_rows!r}")
        if shard_bytes is not None and (not isinstance(shard_bytes, int) or shard_bytes <= 0):
            raise ValueError(f"`shard_bytes` must be a positive int, got {shard_bytes!r}")
        if (root / MANIFEST_NAME).exists():
            raise FileExistsError(
                f"{root}: a dataset already exists here; use ShardWriter.open(root) to append "
                "or choose another directory"
            )
        (root / "shards").mkdir(parents=True, exist_ok=True)
        (root / "events").mkdir(exist_ok=True)
        lock_fd = cls._lock(root)
        table_path = root / EPISODES_NAME
        if table_path.exists():
            table_path.unlink()
        table = EpisodeTable.open(table_path, create=True)
        manifest = Manifest(schema=[], next_from_row=[], shard_rows=shard_rows or 0,
                            source=dict(source or {}))
        write_manifest(root, manifest)
        writer = cls(root, manifest, table, lock_fd)
        if shard_bytes is not None:
            writer._shard_bytes = shard_bytes
        return writer

    @classmethod
    def open(cls, root: str | os.PathLike) -> ShardWriter:
        """Reopens a dataset to append episodes, cleaning up after a crash.

        Rows of an episode that was cut off by a crash are dropped; the caller
        continues from :attr:`num_episodes`.
        """
        root = Path(root)
        manifest = read_manifest(root)
        validate_shards(root, manifest)
        lock_fd = cls._lock(root)
        table = EpisodeTable.open(root / manifest.episodes, create=True)
        table.delete_from(manifest.num_episodes)
        writer = cls(root, manifest, table, lock_fd)
        writer._drop_leftovers()
        writer._drop_partial_tail()
        return writer

    @staticmethod
    def _lock(root: Path) -> int:
        return lock_dataset(root, "another ShardWriter holds this dataset; close it before writing")

    def _drop_leftovers(self) -> None:
        listed = {Path(s.dir).name for s in self._manifest.shards}
        for d in (self.root / "shards").iterdir():
            if d.name not in listed:
                logger.info("removing uncommitted leftover %s", d)
                shutil.rmtree(d, ignore_errors=True) if d.is_dir() else d.unlink()
        logs = {Path(p).name for p in self._manifest.event_logs}
        for f in (self.root / "events").glob("log-*"):
            if f.name not in logs:
                f.unlink()

    def _drop_partial_tail(self) -> None:
        m = self._manifest
        if m.stored_rows == m.num_rows:
            return
        start, keep = 0, []
        for shard in m.shards:
            if start + shard.rows <= m.num_rows:
                keep.append(shard)
            else:
                self._superseded.append(shard.dir)
                if start < m.num_rows:
                    self._prefix = (shard, m.num_rows - start)
            start += shard.rows
        m.shards = keep
        logger.warning(
            "%s: dropping %d rows of an episode cut off by an interrupted write",
            self.root, start - m.num_rows,
        )

    # ------------------------------------------------------------------ properties
    @property
    def num_episodes(self) -> int:
        """Episodes written so far (committed plus waiting for their shard to commit)."""
        return self._next_episode

    @property
    def num_rows(self) -> int:
        return self._written_rows

    @property
    def shard_rows(self) -> int:
        return self._manifest.shard_rows

    # ------------------------------------------------------------------ writing
    def add_episode(
        self,
        td: Any,
        metadata: Mapping[str, Any] | None = None,
        events: Sequence[tuple[int, str, float]] | None = None,
    ) -> int:
        """Appends one episode; returns its id.

        Args:
            td: TensorDict (or nested mapping of tensors / arrays) with leading
                dimension ``T`` in TED layout.
            metadata: per-episode values (int, float or str) for the episode table.
            events: ``(step, name, value)`` triples with ``0 <= step < T``.
        """
        self._check_open()
        cols = flatten_episode(td)
        length = self._episode_length(cols)
        if not self._manifest.schema and not self._manifest.shards:
            self._init_schema(cols)
        rows, final = self._split_columns(cols, length)
        events = self._check_events(events, length)
        metadata = dict(metadata or {})
        episode = self._next_episode
        first_row = self._written_rows
        rows[("episode",)] = np.full(length, episode, dtype=np.int64)
        rows[("step",)] = np.arange(length, dtype=np.int64)
        # Recorded first; a commit includes it once all its rows are in committed shards.
        self._done.append(_Done(episode, first_row, length, final is not None, metadata, events))
        self._next_episode = episode + 1
        self._written_rows += length
        written = 0
        while written < length:
            pending = self._ensure_pending()
            take = min(length - written, self._manifest.shard_rows - pending.rows)
            pending.append({k: v[written:written + take] for k, v in rows.items()})
            written += take
            if written == length and final is not None:
                pending.append_final(pending.rows - 1, final)
            if pending.rows >= self._manifest.shard_rows:
                self._commit()
        return episode

    def _episode_length(self, cols: Mapping[Key, np.ndarray]) -> int:
        lengths = {k: (v.shape[0] if v.ndim else None) for k, v in cols.items()}
        values = set(lengths.values())
        if None in values or len(values) != 1:
            raise ValueError(
                f"every episode entry must have the same leading (time) dimension, got "
                f"{ {'/'.join(k): n for k, n in lengths.items()} }"
            )
        length = values.pop()
        if length == 0:
            raise ValueError("episode has 0 steps; expected at least 1")
        return length

    def _init_schema(self, cols: Mapping[Key, np.ndarray]) -> None:
        for key in _REQUIRED:
            if key not in cols:
                raise KeyError(
                    f"episode is missing {key!r}; expected TorchRL's TED layout with "
                    f"{_REQUIRED} (see torchrl_ext.ShardWriter)"
                )
        obs_like = [
            k for k in cols
            if k[0] != "next" and k[-1] not in DONE_KEYS
            and (("next", *k) in cols or k in OBSERVATION_KEYS)
        ]
        stored = {k: v for k, v in cols.items() if k[0] != "next" or k[1:] not in obs_like}
        stored.setdefault(("next", "terminated"), cols[("next", "done")])
        stored.setdefault(("next", "truncated"), np.zeros_like(cols[("next", "done")]))
        for key in _OWNED:
            stored[key] = np.zeros(1, dtype=np.int64)
        schema = [Column(k, np.asarray(v).dtype, tuple(v.shape[1:])) for k, v in stored.items()]
        row_bytes = sum(c.row_bytes for c in schema)
        if not self._manifest.shard_rows:
            self._manifest.shard_rows = max(1, self._shard_bytes // max(row_bytes, 1))
        self._manifest.schema = schema
        self._manifest.next_from_row = obs_like

    def _split_columns(self, cols: dict[Key, np.ndarray], length: int):
        m = self._manifest
        cols = dict(cols)
        if ("next", "terminated") not in cols:
            cols[("next", "terminated")] = cols.get(("next", "done"))
        if ("next", "truncated") not in cols and ("next", "done") in cols:
            cols[("next", "truncated")] = np.zeros_like(cols[("next", "done")])
        rows: dict[Key, np.ndarray] = {}
        for col in m.schema:
            if col.key in _OWNED:
                continue
            arr = cols.get(col.key)
            if arr is None:
                raise KeyError(
                    f"episode is missing {col.key!r}; the dataset's schema has "
                    f"{[c.key for c in m.schema]}"
                )
            self._check_column(col, arr)
            rows[col.key] = arr
        extra = set(cols) - {c.key for c in m.schema} - {("next", *k) for k in m.next_from_row} - set(_OWNED)
        if extra:
            raise KeyError(
                f"episode has keys {sorted(extra)} that the dataset's schema does not; "
                "write them into a new dataset or drop them"
            )
        final = None
        nexts = {k: cols.get(("next", *k)) for k in m.next_from_row}
        if nexts and all(v is not None for v in nexts.values()):
            final = {}
            for k, v in nexts.items():
                self._check_column(m.column(k), v, ("next", *k))
                final[k] = v[length - 1]
        return rows, final

    @staticmethod
    def _check_column(col: Column, arr: np.ndarray, key: Key | None = None) -> None:
        key = key or col.key
        if tuple(arr.shape[1:]) != col.shape:
            raise ValueError(
                f"episode entry {key!r} has per-step shape {tuple(arr.shape[1:])}, the dataset "
                f"expects {col.shape}; reshape it or write a new dataset"
            )
        if arr.dtype != col.dtype:
            raise TypeError(
                f"episode entry {key!r} has dtype {arr.dtype}, the dataset expects {col.dtype}; "
                "cast it before writing"
            )

    @staticmethod
    def _check_events(events, length: int) -> list[tuple[int, str, float]]:
        out = []
        for ev in events or ():
            try:
                step, name, value = ev
            except (TypeError, ValueError):
                raise ValueError(f"an event must be a (step, name, value) triple, got {ev!r}") from None
            if not isinstance(name, str) or not name:
                raise ValueError(f"event name must be a non-empty str, got {name!r}")
            if not isinstance(step, (int, np.integer)) or not 0 <= int(step) < length:
                raise ValueError(
                    f"event {name!r} has step {step!r}; expected an int in [0, {length}) for "
                    f"an episode of {length} steps"
                )
            out.append((int(step), name, float(value)))
        return out

    def _ensure_pending(self) -> PendingShard:
        if self._pending is None:
            m = self._manifest
            final_cols = []
            if m.next_from_row:
                final_cols = [Column(("row",), np.dtype(np.int64), ())]
                final_cols += [m.column(k) for k in m.next_from_row]
            self._pending = PendingShard(self.root, m.next_shard_id, m.schema, final_cols)
            m.next_shard_id += 1
            if self._prefix is not None:
                self._copy_prefix(*self._prefix)
                self._prefix = None
        return self._pending

    def _copy_prefix(self, shard: ShardInfo, rows: int, chunk_bytes: int = 64 << 20) -> None:
        """Copies the first ``rows`` rows of a partially valid shard into the pending one."""
        src = self.root / shard.dir
        m = self._manifest
        row_bytes = max(sum(c.row_bytes for c in m.schema), 1)
        step = max(1, chunk_bytes // row_bytes)
        maps = {c.key: np.memmap(column_path(src, c.key), dtype=c.dtype, mode="r",
                                 shape=(shard.rows, *c.shape)) for c in m.schema}
        for a in range(0, rows, step):
            self._pending.append({k: v[a:min(rows, a + step)] for k, v in maps.items()})
        if shard.finals:
            fin = {c.key: np.memmap(column_path(src / "final", c.key), dtype=c.dtype, mode="r",
                                    shape=(shard.finals, *c.shape)) for c in self._pending.final_cols}
            for i in range(shard.finals):
                if fin[("row",)][i] < rows:
                    self._pending.append_final(int(fin[("row",)][i]), {k: v[i] for k, v in fin.items()})

    # ------------------------------------------------------------------ committing
    def flush(self) -> None:
        """Commits the shard being written, even if it is not full."""
        self._check_open()
        if self._prefix is not None:
            self._ensure_pending()
        if self._pending is not None and self._pending.rows:
            self._commit()
        elif self._superseded:
            write_manifest(self.root, self._manifest)
            self._remove_superseded()

    def _remove_superseded(self) -> None:
        for d in self._superseded:
            shutil.rmtree(self.root / d, ignore_errors=True)
        self._superseded = []

    def _commit(self) -> None:
        m = self._manifest
        pending, self._pending = self._pending, None
        info = pending.seal(self.root, f"{pending.shard_id:06d}")
        m.shards.append(info)
        stored = m.stored_rows
        ready = [d for d in self._done if d.first_row + d.length <= stored]
        self._done = [d for d in self._done if d.first_row + d.length > stored]
        if ready:
            self._table.insert(
                (d.episode, d.first_row, d.length, d.has_final, d.metadata) for d in ready
            )
            log = self._write_event_log(ready, pending.shard_id)
            if log:
                m.event_logs.append(log)
            m.num_episodes = ready[-1].episode + 1
            m.num_rows = ready[-1].first_row + ready[-1].length
        write_manifest(self.root, m)
        self._remove_superseded()
        logger.debug("committed %s (%d rows)", info.dir, info.rows)

    def _write_event_log(self, done: list[_Done], shard_id: int) -> str | None:
        events = [(d.episode, d.first_row, ev) for d in done for ev in d.events]
        if not events:
            return None
        names = sorted({ev[1] for _, _, ev in events})
        lookup = {n: i for i, n in enumerate(names)}
        rel = f"events/log-{shard_id:06d}.npz"
        tmp = self.root / "events" / f".tmp-log-{shard_id:06d}.npz"
        with open(tmp, "wb") as f:
            np.savez(
                f,
                names=np.asarray(names, dtype=str),
                name_id=np.asarray([lookup[ev[1]] for _, _, ev in events], dtype=np.int32),
                episode=np.asarray([e for e, _, _ in events], dtype=np.int64),
                step=np.asarray([ev[0] for _, _, ev in events], dtype=np.int64),
                row=np.asarray([r + ev[0] for _, r, ev in events], dtype=np.int64),
                value=np.asarray([ev[2] for _, _, ev in events], dtype=np.float64),
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.root / rel)
        return rel

    def close(self) -> None:
        """Commits what is pending and releases the dataset."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._table.close()
            os.close(self._lock_fd)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self.root}: writer is closed; use ShardWriter.open(root) to append")

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
