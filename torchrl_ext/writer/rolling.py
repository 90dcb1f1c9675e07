"""Rolling shards: episodes' rows appended to the shard being written, the next one started when it is full.

A shard holds ``manifest.shard_rows`` rows, and an episode may span shards.
Each full shard is committed (:mod:`.commit`) before the next one starts
(:class:`~torchrl_ext.writer.pending.PendingShard`, numbered by
``manifest.next_shard_id``). An episode with pre-encoded chunks that goes on
in the next shard is cut at a chunk end (:func:`~torchrl_ext.writer.encoded.rows_to_chunk_end`),
so such a shard may end short. After a resume, the first new shard starts
with the committed prefix of the shard the crash cut (:func:`~torchrl_ext.writer.recovery.copy_prefix`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..format import Key, Manifest, ShardInfo, final_columns
from .commit import ShardCommitter
from .encoded import chunk_ends, rows_to_chunk_end
from .pending import PendingShard
from .recovery import copy_prefix

__all__ = ["RollingShards"]


class RollingShards:
    """The shards a writer appends rows to.

    Args:
        root: the dataset directory.
        manifest: the writer's manifest (its schema, shard size and next shard id).
        dictionaries: the compression dictionaries by key; read when a shard
            starts, so one trained later is used from the next shard on.
        commits: commits each shard once it is full or flushed.
        prefix: ``(shard, rows)`` to copy into the first new shard on a resume.
    """

    def __init__(self, root: Path, manifest: Manifest, dictionaries: dict[Key, bytes], commits: ShardCommitter,
                 prefix: tuple[ShardInfo, int] | None = None) -> None:
        self.root = root
        self.manifest = manifest
        self.dictionaries = dictionaries
        self.commits = commits
        self.prefix = prefix
        self._pending: PendingShard | None = None

    def append(self, rows: dict[Key, Any], final: dict[Key, np.ndarray] | None) -> None:
        """Appends one whole episode's rows (and its final values), committing each shard it fills."""
        m = self.manifest
        length = len(rows[("step",)])
        ends = chunk_ends(rows)
        written = 0
        while written < length:
            pending = self._ensure_pending()
            take = min(length - written, m.shard_rows - pending.rows)
            cut = ends is not None and written + take < length
            if cut:  # the episode goes on in the next shard: split it where a pre-encoded chunk ends
                take = rows_to_chunk_end(ends, written, take)
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

    def flush(self) -> None:
        """Commits the shard being written even if it is not full (after a resume, at least its prefix)."""
        if self.prefix is not None:
            self._ensure_pending()
        if self._pending is not None and self._pending.rows:
            self._commit()
        else:
            self.commits.commit_resume()

    def discard(self) -> None:
        """Deletes the shard being written, uncommitted (after a failed write)."""
        if self._pending is not None:
            self._pending.discard()

    def _ensure_pending(self) -> PendingShard:
        if self._pending is None:
            m = self.manifest
            self._pending = PendingShard(self.root, m.next_shard_id, m.schema, final_columns(m), self.dictionaries)
            m.next_shard_id += 1
            if self.prefix is not None:
                copy_prefix(self.root, m, *self.prefix, self._pending)
                self.prefix = None
        return self._pending

    def _commit(self) -> None:
        pending, self._pending = self._pending, None
        self.commits.commit(pending)
