"""ShardWriter: episodes in, rolling memmap shards + episode table + event logs out.

Crash safety: a shard is written into ``shards/.tmp-*`` and renamed into place;
the episode table and event log of the episodes it completes are written next;
the manifest is replaced atomically last. Only the manifest makes anything
visible, so a process killed at any moment leaves a dataset that opens with
every committed episode. ``ShardWriter.open`` removes leftovers and rewrites
the rows of an episode that was cut by a crash, then appends.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..format import (
    DICT_DIR,
    EPISODES_NAME,
    MANIFEST_NAME,
    Column,
    Key,
    Manifest,
    event_log_name,
    final_columns,
    load_dictionaries,
    read_manifest,
    validate_shards,
    write_dictionary,
    write_event_log,
    write_manifest,
)
from ..format.episodes import FIXED_COLUMNS, EpisodeTable
from ..validation import path, positive_int
from .encoded import (
    check_encoded,
    chunk_ends,
    encoded_placeholders,
    resolve_column_encodings,
)
from .lock import LOCK_NAME, lock_dataset, unlock_dataset
from .pending import PendingShard
from .recovery import copy_prefix, drop_leftovers, drop_partial_tail
from .schema import (
    MetadataTypes,
    check_events,
    episode_length,
    flatten_episode,
    infer_schema,
    split_episode,
)

__all__ = ["ShardWriter", "DEFAULT_SHARD_BYTES"]

logger = logging.getLogger(__name__)

DEFAULT_SHARD_BYTES = 256 * 1024 * 1024
DICT_SAMPLE_ROWS = 1024  # rows a compression dictionary is trained on (held back until then)
_OURS = {MANIFEST_NAME, EPISODES_NAME, LOCK_NAME, DICT_DIR, "shards", "events"}


@dataclass
class _Done:
    """A complete episode waiting for its rows to be committed."""

    episode: int
    first_row: int
    length: int
    has_final: bool
    metadata: dict[str, Any]
    events: list[tuple[int, str, float]]


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
        self._prefix = None
        self._next_episode = manifest.num_episodes
        self._written_rows = manifest.num_rows  # global rows appended so far
        self._shard_bytes = DEFAULT_SHARD_BYTES
        self._encodings: dict[Key, Any] = {}
        self._dicts: dict[Key, bytes] = load_dictionaries(root, manifest.schema)
        self._untrained: set[Key] = set()  # zstd columns waiting for DICT_SAMPLE_ROWS rows
        self._held: list[tuple[dict, dict | None]] = []
        self._meta_types = MetadataTypes(table.metadata_columns(), FIXED_COLUMNS)
        self._closed = False
        self._failed: BaseException | None = None  # a write that raised after checks passed

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        root: str | os.PathLike,
        *,
        shard_rows: int | None = None,
        shard_bytes: int | None = None,
        source: Mapping[str, Any] | None = None,
        encodings: Mapping[str | Sequence[str], Any] | None = None,
        overwrite: bool = False,
    ) -> ShardWriter:
        """Starts a new dataset at ``root`` (which must not hold one, nor unrelated files).

        Args:
            root: new dataset directory.
            shard_rows: rows per shard (default: ``shard_bytes`` of raw rows).
            shard_bytes: raw bytes per shard when ``shard_rows`` is not given (256 MiB).
            source: free-form JSON description stored in the manifest.
            encodings: ``{key: encoding}`` for stored columns, e.g.
                ``{"observation": "zstd"}`` or ``{"pixels": Video(crf=20)}``
                (see :mod:`torchrl_ext.encodings`); other columns are raw.
            overwrite: replace a dataset already at ``root`` (its files only;
                unrelated files are still refused).
        """
        root = path(root, "root")
        positive_int(shard_rows, "shard_rows", allow_none=True)
        positive_int(shard_bytes, "shard_bytes", allow_none=True)
        resolved = resolve_column_encodings(encodings)
        leftover: list[Path] = []
        if root.is_dir():
            leftover = [p for p in root.glob(f".{MANIFEST_NAME}.*.tmp") if p.is_file()]  # a create killed mid-write
            unrelated = sorted(p.name for p in root.iterdir() if not _is_ours(p.name) and p not in leftover)
            if unrelated:
                raise FileExistsError(
                    f"{root}: the directory holds other files ({', '.join(unrelated[:5])}); "
                    "choose an empty or new directory for a dataset"
                )
        if overwrite and (root / MANIFEST_NAME).exists():
            _remove_dataset(root)
        if (root / MANIFEST_NAME).exists():
            raise FileExistsError(
                f"{root}: a dataset already exists here; use ShardWriter.open(root) to append, "
                "ShardWriter.create(root, overwrite=True) to replace it, or choose another directory"
            )
        for p in leftover:
            p.unlink()
        (root / "shards").mkdir(parents=True, exist_ok=True)
        (root / "events").mkdir(exist_ok=True)
        lock_fd = cls._lock(root)
        table_path = root / EPISODES_NAME
        if table_path.exists():
            table_path.unlink()
        table = EpisodeTable.open(table_path, create=True)
        manifest = Manifest(schema=[], next_from_row=[], shard_rows=shard_rows or 0,
                            source=dict(source or {}),
                            encodings=[Column(k, np.dtype(np.uint8), (), e.name, tuple(sorted(
                                (n, v) for n, v in e.to_json().items() if n != "name")))
                                for k, e in resolved.items()])
        write_manifest(root, manifest)
        writer = cls(root, manifest, table, lock_fd)
        writer._encodings = resolved
        if shard_bytes is not None:
            writer._shard_bytes = shard_bytes
        return writer

    @classmethod
    def open(cls, root: str | os.PathLike) -> ShardWriter:
        """Reopens a dataset to append episodes, cleaning up after a crash.

        Rows of an episode that was cut off by a crash are dropped; the caller
        continues from :attr:`num_episodes`. Columns keep their encodings.
        """
        root = path(root, "root")
        manifest = read_manifest(root)
        validate_shards(root, manifest)
        lock_fd = cls._lock(root)
        try:
            table = EpisodeTable.open(root / manifest.episodes, create=True)
            table.delete_from(manifest.num_episodes)
        except BaseException:
            unlock_dataset(root, lock_fd)
            raise
        writer = cls(root, manifest, table, lock_fd)
        if not manifest.schema and manifest.encodings:
            writer._encodings = resolve_column_encodings(
                {c.key: {"name": c.encoding, **c.options_dict} for c in manifest.encodings})
        drop_leftovers(root, manifest)
        writer._superseded, writer._prefix = drop_partial_tail(root, manifest)
        return writer

    @staticmethod
    def _lock(root: Path) -> int:
        return lock_dataset(root, "another ShardWriter holds this dataset; close it before writing")

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

    def encoded_columns(self) -> dict[Key, tuple[Any, bytes | None]]:
        """``{key: (encoding options, dictionary bytes or None)}`` of the columns that rows may arrive
        pre-encoded for (``add_episode(..., encoded=...)``): the schema's encoded columns, or before the
        first episode those given to :meth:`create`. A zstd column whose dictionary is not trained yet
        is left out: its rows must reach the writer as arrays.
        """
        from ..encodings import column_options

        m = self._manifest
        if m.schema:
            cols = {c.key: c for c in m.schema if c.encoding != "raw"}
            return {k: (column_options(c), self._dicts.get(k)) for k, c in cols.items()
                    if k not in self._untrained}
        return {k: (o, None) for k, o in self._encodings.items()
                if o.name != "raw" and not getattr(o, "dictionary", False)}

    # ------------------------------------------------------------------ writing
    def add_episode(
        self,
        td: Any,
        metadata: Mapping[str, Any] | None = None,
        events: Sequence[tuple[int, str, float]] | None = None,
        *,
        encoded: Mapping[str | tuple[str, ...], Any] | None = None,
    ) -> int:
        """Appends one episode; returns its id.

        Everything is checked before anything is recorded: a refused episode
        leaves the writer as it was.

        Args:
            td: TensorDict (or nested mapping of tensors / arrays) with leading
                dimension ``T`` in TED layout.
            metadata: per-episode values (int, float or str; one type per key
                across episodes) for the episode table.
            events: ``(step, name, value)`` triples with ``0 <= step < T``.
            encoded: ``{key: EncodedChunks}``: columns given as chunks already
                coded in their encoding's payload format (not in ``td``),
                stored without re-encoding; see :mod:`torchrl_ext.writer.encoded`
                for the conditions (same codec, chunks no larger than the
                column's chunk size).
        """
        self._check_open()
        cols = flatten_episode(td)
        chunks = encoded_placeholders(encoded, cols)
        length = episode_length(cols)
        m = self._manifest
        schema, next_keys = (m.schema, m.next_from_row) if (m.schema or m.shards) else self._new_schema(cols)
        rows, final = split_episode(cols, schema, next_keys, length)
        events = check_events(events, length)
        if chunks:
            check_encoded(chunks, schema, m.shard_rows or self._default_shard_rows(schema))
            rows.update(chunks)
        metadata = self._meta_types.check(metadata)  # last check: it records the keys' types
        try:
            return self._record(rows, final, length, metadata, events, schema, next_keys)
        except BaseException as err:  # e.g. a full disk: the shard being written is unusable
            self._failed = err
            raise

    def _record(self, rows, final, length, metadata, events, schema, next_keys) -> int:
        m = self._manifest
        if not m.schema:
            self._set_schema(schema, next_keys)
        episode = self._next_episode
        first_row = self._written_rows
        rows[("episode",)] = np.full(length, episode, dtype=np.int64)
        rows[("step",)] = np.arange(length, dtype=np.int64)
        # Recorded first; a commit includes it once all its rows are in committed shards.
        self._done.append(_Done(episode, first_row, length, final is not None, metadata, events))
        self._next_episode = episode + 1
        self._written_rows += length
        if self._untrained:  # rows wait until a compression dictionary is trained on enough of them
            self._held.append((rows, final))
            if sum(len(r[("step",)]) for r, _ in self._held) >= DICT_SAMPLE_ROWS:
                self._train_dictionaries()
            return episode
        self._append(rows, final)
        return episode

    def _append(self, rows: dict[Key, Any], final: dict[Key, np.ndarray] | None) -> None:
        m = self._manifest
        length = len(rows[("step",)])
        ends = chunk_ends(rows)
        written = 0
        while written < length:
            pending = self._ensure_pending()
            take = min(length - written, m.shard_rows - pending.rows)
            cut = ends is not None and written + take < length
            if cut:  # the episode goes on in the next shard: split it where a pre-encoded chunk ends
                k = int(np.searchsorted(ends, written + take, side="right"))
                take = (int(ends[k - 1]) if k else 0) - written
                if take <= 0:  # the next chunk does not fit: this shard ends here
                    self._commit()
                    continue
            pending.append({k: v[written:written + take] for k, v in rows.items()})
            written += take
            if written == length:
                pending.end_episode()
                if final is not None:
                    pending.append_final(pending.rows - 1, final)
            if pending.rows >= m.shard_rows or cut:
                self._commit()

    def _new_schema(self, cols: Mapping[Key, np.ndarray]):
        schema, next_keys = infer_schema(cols)
        keys = {c.key for c in schema}
        unknown = sorted(k for k in self._encodings if k not in keys)
        if unknown:
            raise ValueError(
                f"`encodings` names {unknown}, which the episode does not store; stored keys are "
                f"{sorted(keys)}"
            )
        from ..encodings import check_column

        out = []
        for col in schema:
            enc = self._encodings.get(col.key)
            if enc is not None and enc.name != "raw":
                try:
                    check_column(enc, col.dtype, col.shape)
                except ValueError as err:
                    raise ValueError(f"`encodings` for {col.key!r}: {err}") from None
                col = col.with_encoding(enc.name, enc.to_json())
            out.append(col)
        return out, next_keys

    def _train_dictionaries(self) -> None:
        """Trains the zstd dictionaries on the held rows, stores them, then writes the held episodes.

        With fewer than 8 rows in the whole dataset there is nothing to train on; the column is
        then written without a dictionary (``dictionary: false`` in its options).
        """
        from ..encodings import train_dictionary

        m = self._manifest
        for key in sorted(self._untrained):
            rows = np.concatenate([r[key] for r, _ in self._held]) if self._held else np.zeros(0)
            col = m.column(key)
            options = col.options_dict
            if len(rows) >= 8:
                sample = rows[np.linspace(0, len(rows) - 1, min(len(rows), 4096)).astype(np.int64)]
                self._dicts[key] = data = train_dictionary(sample)
                options.update(write_dictionary(self.root, key, data))
            else:
                logger.warning("%s: %d rows of %r are too few to train a dictionary; writing without one",
                               self.root, len(rows), key)
                options["dictionary"] = False
            m.schema = [col.with_encoding(col.encoding, options) if c.key == key else c for c in m.schema]
        self._untrained = set()
        held, self._held = self._held, []
        for rows, final in held:
            self._append(rows, final)

    def _default_shard_rows(self, schema) -> int:
        row_bytes = sum(c.row_bytes for c in schema)
        return max(1, self._shard_bytes // max(row_bytes, 1))

    def _set_schema(self, schema, next_keys) -> None:
        m = self._manifest
        if not m.shard_rows:
            m.shard_rows = self._default_shard_rows(schema)
        m.schema = schema
        m.next_from_row = next_keys
        m.encodings = []
        self._untrained = {c.key for c in schema if c.encoding == "zstd" and c.options_dict.get("dictionary")
                           and "dictionary_file" not in c.options_dict}

    def _ensure_pending(self) -> PendingShard:
        if self._pending is None:
            m = self._manifest
            self._pending = PendingShard(self.root, m.next_shard_id, m.schema, final_columns(m), self._dicts)
            m.next_shard_id += 1
            if self._prefix is not None:
                copy_prefix(self.root, m, *self._prefix, self._pending)
                self._prefix = None
        return self._pending

    # ------------------------------------------------------------------ committing
    def flush(self) -> None:
        """Commits the shard being written, even if it is not full."""
        self._check_open()
        if self._untrained:
            self._train_dictionaries()
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
            events = [(d.episode, step, d.first_row + step, name, value)
                      for d in ready for step, name, value in d.events]
            if events:
                rel = event_log_name(pending.shard_id)
                crc = write_event_log(self.root / rel, events)
                if len(m.event_log_crcs) == len(m.event_logs):  # else a dataset from before checksums
                    m.event_log_crcs.append(crc)
                m.event_logs.append(rel)
            m.num_episodes = ready[-1].episode + 1
            m.num_rows = ready[-1].first_row + ready[-1].length
            m.episodes_crc = self._table.content_crc(m.num_episodes)
        write_manifest(self.root, m)
        self._remove_superseded()
        logger.debug("committed %s (%d rows)", info.dir, info.rows)

    def close(self) -> None:
        """Commits what is pending and releases the dataset.

        After a failed write nothing more is committed: the dataset keeps its last
        commit, and :meth:`open` resumes from there.
        """
        if self._closed:
            return
        try:
            if self._failed is None:
                self.flush()
            elif self._pending is not None:
                self._pending.discard()
        finally:
            self._closed = True
            self._table.close()
            unlock_dataset(self.root, self._lock_fd)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self.root}: writer is closed; use ShardWriter.open(root) to append")
        if self._failed is not None:
            raise RuntimeError(
                f"{self.root}: an earlier write failed ({self._failed!r}); close this writer and "
                "reopen with ShardWriter.open(root) to resume from the last commit"
            )

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _is_ours(name: str) -> bool:
    """A name a dataset directory holds (including a rewritten episode table, ``episodes.<hex>.sqlite``)."""
    return name in _OURS or (name.startswith("episodes.") and name.endswith(".sqlite"))


def _remove_dataset(root: Path) -> None:
    """Deletes the files of the dataset at ``root`` (manifest first, so it stops being one at once)."""
    lock_fd = lock_dataset(root, "another ShardWriter holds this dataset; close it before overwriting")
    try:
        (root / MANIFEST_NAME).unlink()
        for p in root.iterdir():
            if p.name != LOCK_NAME and _is_ours(p.name):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    finally:
        unlock_dataset(root, lock_fd)
