"""ShardWriter: episodes in, rolling memmap shards + episode table + event logs out.

Crash safety: a shard is written into ``shards/.tmp-*`` and renamed into place;
the episode table and event log of the episodes it completes are written next;
the manifest is replaced atomically last. Only the manifest makes anything
visible, so a process killed at any moment leaves a dataset that opens with
every committed episode. ``ShardWriter.open`` removes leftovers and rewrites
the rows of an episode that was cut by a crash, then appends.

The writer checks each episode and routes its rows; one helper per idea does
the rest: :mod:`.directory` (a new dataset's directory), :mod:`.recovery`
(resume), :mod:`.column_encodings` (``create``'s encodings into the schema),
:mod:`.dictionaries` (episodes held until zstd dictionaries are trained),
:mod:`.encoded` (pre-encoded chunks), :mod:`.rolling` (rows into the shard
being written, the next started when it is full) and :mod:`.commit` (a shard,
its episodes and events made visible).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..format import (
    EPISODES_NAME,
    Key,
    Manifest,
    load_dictionaries,
    read_manifest,
    validate_shards,
    write_manifest,
)
from ..format.episodes import FIXED_COLUMNS, EpisodeTable
from ..validation import positive_int, user_path
from .column_encodings import (
    apply_encodings,
    encodings_from_manifest,
    encodings_to_manifest,
    resolve_column_encodings,
)
from .commit import DoneEpisode, ShardCommitter
from .dictionaries import DICT_SAMPLE_ROWS, DictionaryTraining, untrained_columns  # noqa: F401 (was defined here)
from .directory import prepare_new_dataset, remove_dataset
from .encoded import accepted_columns, check_encoded, encoded_placeholders
from .lock import LOCK_NAME, lock_dataset, unlock_dataset
from .recovery import drop_leftovers, drop_partial_tail, open_episode_table
from .rolling import RollingShards
from .schema import (
    MetadataTypes,
    check_events,
    episode_length,
    flatten_episode,
    infer_schema,
    split_episode,
)

__all__ = ["ShardWriter", "DEFAULT_SHARD_BYTES"]

DEFAULT_SHARD_BYTES = 256 * 1024 * 1024


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
        self._next_episode = manifest.num_episodes
        self._written_rows = manifest.num_rows  # global rows appended so far
        self._shard_bytes = DEFAULT_SHARD_BYTES
        self._encodings: dict[Key, Any] = {}
        self._dicts: dict[Key, bytes] = load_dictionaries(root, manifest.schema)
        self._commits = ShardCommitter(root, manifest, table)
        self._shards = RollingShards(root, manifest, self._dicts, self._commits)
        self._training = DictionaryTraining(set())
        self._dictionary_rows: dict = {}  # create(dictionary_rows=): what the dictionaries are trained on
        self._meta_types = MetadataTypes(table.metadata_columns(), FIXED_COLUMNS)
        self._closed = False
        self._failed: BaseException | None = None  # a write that raised after checks passed
        self._created: str | None = None  # what `create` made: "directory", "files" or None (`open`)
        self._store_next: list[Key] = []  # keys whose ("next", key) is a column of its own (`create`)

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
        store_next: Sequence[str | Sequence[str]] = (),
        dictionary_rows: Mapping[str | Sequence[str], Any] | None = None,
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
            store_next: observation keys whose ``("next", key)`` is stored as a
                column of its own, for data where it is not the next row's value
                (by default it is stored once: the next row's value plus the
                episode's final one).
            dictionary_rows: ``{key: rows}``: sample rows of a zstd column with
                ``dictionary=True`` to train its dictionary on (e.g. rows picked
                across a whole run); by default the first 1,024 rows written.
        """
        root = user_path(root, "root")
        positive_int(shard_rows, "shard_rows", allow_none=True)
        positive_int(shard_bytes, "shard_bytes", allow_none=True)
        resolved = resolve_column_encodings(encodings)
        made_dir = not root.exists()
        prepare_new_dataset(root, overwrite)
        lock_fd = cls._lock(root)
        table_path = root / EPISODES_NAME
        table_path.unlink(missing_ok=True)  # a leftover, or a planted (even dangling) symlink: never followed
        table = EpisodeTable.open(table_path, create=True)
        manifest = Manifest(schema=[], next_from_row=[], shard_rows=shard_rows or 0,
                            source=dict(source or {}), encodings=encodings_to_manifest(resolved))
        write_manifest(root, manifest)
        writer = cls(root, manifest, table, lock_fd)
        writer._encodings = resolved
        writer._created = "directory" if made_dir else "files"
        writer._store_next = [(k,) if isinstance(k, str) else tuple(k) for k in store_next]
        writer._dictionary_rows = {((k,) if isinstance(k, str) else tuple(k)): v
                                   for k, v in (dictionary_rows or {}).items()}
        if shard_bytes is not None:
            writer._shard_bytes = shard_bytes
        return writer

    @classmethod
    def open(cls, root: str | os.PathLike) -> ShardWriter:
        """Reopens a dataset to append episodes, cleaning up after a crash.

        Rows of an episode that was cut off by a crash are dropped; the caller
        continues from :attr:`num_episodes`. Columns keep their encodings.
        """
        root = user_path(root, "root")
        manifest = read_manifest(root)
        validate_shards(root, manifest)
        lock_fd = cls._lock(root)
        try:
            table = open_episode_table(root, manifest)
        except BaseException:
            unlock_dataset(root, lock_fd)
            raise
        writer = cls(root, manifest, table, lock_fd)
        if not manifest.schema:
            writer._encodings = encodings_from_manifest(manifest.encodings)
        drop_leftovers(root, manifest)
        writer._commits.superseded, writer._shards.prefix = drop_partial_tail(root, manifest)
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
        return accepted_columns(self._manifest, self._encodings, self._dicts, self._training.columns)

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
        if not self._manifest.schema:
            self._set_schema(schema, next_keys)
        episode = self._next_episode
        first_row = self._written_rows
        rows[("episode",)] = np.full(length, episode, dtype=np.int64)
        rows[("step",)] = np.arange(length, dtype=np.int64)
        # Recorded first; a commit includes it once all its rows are in committed shards.
        self._commits.done.append(DoneEpisode(episode, first_row, length, final is not None, metadata, events))
        self._next_episode = episode + 1
        self._written_rows += length
        if self._training.waiting:  # rows wait until a compression dictionary is trained on enough of them
            if self._training.hold(rows, final, length):
                self._train_dictionaries()
            return episode
        self._shards.append(rows, final)
        return episode

    def _new_schema(self, cols: Mapping[Key, np.ndarray]):
        schema, next_keys = infer_schema(cols, self._store_next)
        return apply_encodings(schema, self._encodings), next_keys

    def _train_dictionaries(self) -> None:
        """Trains the zstd dictionaries on the held rows, then writes the held episodes with them."""
        for rows, final in self._training.train(self.root, self._manifest, self._dicts):
            self._shards.append(rows, final)

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
        self._training = DictionaryTraining(untrained_columns(schema), self._dictionary_rows)

    # ------------------------------------------------------------------ committing
    def flush(self) -> None:
        """Commits the shard being written, even if it is not full."""
        self._check_open()
        if self._training.waiting:
            self._train_dictionaries()
        self._shards.flush()

    def close(self, *, failed: bool = False) -> None:
        """Commits what is pending and releases the dataset.

        After a failed write nothing more is committed: the dataset keeps its last
        commit, and :meth:`open` resumes from there.

        Args:
            failed: the caller stops because of an error (``with`` passes it).
                A dataset made by :meth:`create` that has not committed a row
                by then is removed, with its directory when ``create`` made
                it, so a run that fails at its first episode leaves nothing.
        """
        if self._closed:
            return
        try:
            if self._failed is None:
                self.flush()
            else:
                self._shards.discard()
        finally:
            self._closed = True
            self._table.close()
            unlock_dataset(self.root, self._lock_fd)
        if failed and self._created and not self._manifest.shards:
            remove_dataset(self.root)
            (self.root / LOCK_NAME).unlink(missing_ok=True)
            if self._created == "directory":
                self.root.rmdir()  # empty now; refusing to remove a non-empty one is the right failure

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

    def __exit__(self, exc_type, *exc) -> None:
        self.close(failed=exc_type is not None)
