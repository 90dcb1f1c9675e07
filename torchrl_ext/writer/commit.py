"""Committing a shard: the one step that makes written rows visible.

A commit seals the shard being written (fsync, then rename out of
``shards/.tmp-*``), inserts the episode-table rows and writes the event log of
the episodes whose last row it holds, and replaces the manifest last, which is
the commit point: a process killed before that leaves the previous commit
intact (:mod:`.recovery` cleans up). Shards superseded by a resume (a partial
shard whose committed prefix was copied forward) are removed only after the
manifest stops listing them.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..format import Manifest, dataset_dir, event_log_name, write_event_log, write_manifest
from ..format.episodes import EpisodeTable
from .pending import PendingShard

__all__ = ["DoneEpisode", "ShardCommitter"]

logger = logging.getLogger(__name__)


@dataclass
class DoneEpisode:
    """A complete episode waiting for its rows to be committed."""

    episode: int
    first_row: int
    length: int
    has_final: bool
    metadata: dict[str, Any]
    events: list[tuple[int, str, float]]


@dataclass
class ShardCommitter:
    """Commits shards of the dataset at ``root``, with the episodes they complete.

    Args:
        root: the dataset directory.
        manifest: the writer's manifest, updated and written on each commit.
        table: the dataset's episode table.
        done: complete episodes not yet committed, in order.
        superseded: shard directories (relative to ``root``) to remove after
            the next commit.
    """

    root: Path
    manifest: Manifest
    table: EpisodeTable
    done: list[DoneEpisode] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)

    def commit(self, pending: PendingShard) -> None:
        """Seals ``pending`` and commits it with the episodes whose rows are now all in shards."""
        m = self.manifest
        info = pending.seal(self.root, f"{pending.shard_id:06d}")
        m.shards.append(info)
        stored = m.stored_rows
        ready = [d for d in self.done if d.first_row + d.length <= stored]
        self.done = [d for d in self.done if d.first_row + d.length > stored]
        if ready:
            self.table.insert((d.episode, d.first_row, d.length, d.has_final, d.metadata) for d in ready)
            events = [(d.episode, step, d.first_row + step, name, value)
                      for d in ready for step, name, value in d.events]
            if events:
                rel = event_log_name(pending.shard_id)
                dataset_dir(self.root, str(Path(rel).parent))  # events/ resolves inside the root
                crc = write_event_log(self.root / rel, events)
                if len(m.event_log_crcs) == len(m.event_logs):  # else a dataset from before checksums
                    m.event_log_crcs.append(crc)
                m.event_logs.append(rel)
            m.num_episodes = ready[-1].episode + 1
            m.num_rows = ready[-1].first_row + ready[-1].length
            m.episodes_crc = self.table.content_crc(m.num_episodes)
        write_manifest(self.root, m)
        self._remove_superseded()
        logger.debug("committed %s (%d rows)", info.dir, info.rows)

    def commit_resume(self) -> None:
        """Commits the manifest without a new shard when a resume superseded shards; else does nothing.

        A resume that dropped a cut tail but appended no rows still commits,
        so that the superseded shards can go.
        """
        if self.superseded:
            write_manifest(self.root, self.manifest)
            self._remove_superseded()

    def _remove_superseded(self) -> None:
        for d in self.superseded:
            shutil.rmtree(self.root / d, ignore_errors=True)
        self.superseded = []
