"""Checking a dataset's checksums while reading: each shard on first touch, or everything at once.

A shard's checksum covers its files (``final/`` and encoded chunks included);
the manifest also holds the crc32 of each event log and the content checksum
of the episode table. Each shard is checked at most once per opening, also
when several threads read at the same time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..format import (
    EpisodeTable,
    FormatError,
    Manifest,
    ShardInfo,
    check_event_log,
    resolve_inside,
    verify_shard,
)

__all__ = ["ShardChecks"]


class ShardChecks:
    """Which shards of the dataset at ``root`` were checked, and the checks themselves.

    Args:
        root: dataset directory.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.verified: set[int] = set()
        self.lock = threading.Lock()

    def forget(self) -> None:
        """Marks every shard unchecked (their files were reopened)."""
        self.verified = set()

    def check_touched(self, manifest: Manifest, shards: list[ShardInfo], offsets: np.ndarray,
                      flat: np.ndarray) -> None:
        """Checks the shards holding global rows ``flat`` that were not checked yet."""
        touched = np.unique(np.searchsorted(offsets, flat, side="right") - 1)
        todo = [int(s) for s in touched if int(s) not in self.verified]
        if not todo:
            return
        with self.lock:
            for s in todo:
                if s not in self.verified:
                    verify_shard(self.root, manifest, shards[s])
                    self.verified.add(s)

    def check_all(self, manifest: Manifest, shards: list[ShardInfo],
                  progress: Callable[[int], None] | None = None) -> None:
        """Recomputes every checksum: each shard's files, then the event logs and the episode table's content.

        Raises:
            FormatError: naming the first corrupt shard or file.
        """
        for i, shard in enumerate(shards):
            verify_shard(self.root, manifest, shard)
            self.verified.add(i)
            if progress is not None:
                progress(i)
        for rel, crc in zip(manifest.event_logs, manifest.event_log_crcs):
            check_event_log(resolve_inside(self.root, rel, str(self.root / "dataset.json")), crc)
        if manifest.episodes_crc:
            table = EpisodeTable.from_dataset(self.root, manifest.episodes)
            try:
                found = table.content_crc(manifest.num_episodes)
            finally:
                table.close()
            if found != manifest.episodes_crc:
                raise FormatError(
                    f"{table.path}: content checksum {found} does not match the manifest's "
                    f"{manifest.episodes_crc}; the episode table was edited or is corrupt, restore it from a copy"
                )
