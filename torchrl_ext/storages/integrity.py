"""Checking a dataset's checksums while reading: each shard on first touch, or everything at once.

A shard's checksum covers its column files (``final/`` and encoded chunks
included); the manifest also holds the crc32 of each shard's TensorDict
``meta.json`` files, of each event log, and the content checksum of the
episode table. Each shard (its files and its ``meta.json``) is checked at
most once per opening, also when several threads read at the same time.
``verify="first-read"`` also checks the episode table when it is loaded,
before any episode boundary or ``("next", K)`` value is taken from it.
Datasets written before a checksum was recorded open as before; what no
checksum covers is listed by :func:`uncovered`.
"""

from __future__ import annotations

import logging
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
from ..format.checksum import check_td_meta

__all__ = ["ShardChecks", "check_episode_table", "uncovered"]

logger = logging.getLogger(__name__)


def check_episode_table(manifest: Manifest, table: EpisodeTable) -> None:
    """Compares the content checksum of the table's visible rows with the manifest's (none recorded: no check).

    Raises:
        FormatError: naming the table file when they differ.
    """
    if not manifest.episodes_crc:
        return
    found = table.content_crc(manifest.num_episodes)
    if found != manifest.episodes_crc:
        raise FormatError(
            f"{table.path}: content checksum {found} does not match the manifest's {manifest.episodes_crc}; "
            "the episode table was edited or is corrupt: run `torchrl-ext verify`, then restore it from a "
            "copy or download the dataset again"
        )


def uncovered(manifest: Manifest) -> list[str]:
    """What the manifest records no checksum for (a dataset written before it did), one phrase each."""
    out = []
    old = sum(1 for s in manifest.shards if not s.meta_crcs)
    if old:
        out.append(f"the TensorDict meta.json files of {old} of {len(manifest.shards)} shards")
    if manifest.event_logs and not manifest.event_log_crcs:
        out.append(f"{len(manifest.event_logs)} event logs")
    if manifest.num_episodes and not manifest.episodes_crc:
        out.append("the episode table")
    return out


def _check_shard(root: Path, manifest: Manifest, shard: ShardInfo) -> None:
    verify_shard(root, manifest, shard)
    if shard.meta_crcs:
        check_td_meta(resolve_inside(root, shard.dir, str(root / "dataset.json")), shard.meta_crcs, root=root)


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
                    _check_shard(self.root, manifest, shards[s])
                    self.verified.add(s)

    def check_all(self, manifest: Manifest, shards: list[ShardInfo],
                  progress: Callable[[int], None] | None = None) -> None:
        """Recomputes every checksum: each shard's files and ``meta.json``, then the event logs and the
        episode table's content. What no checksum covers is logged as a warning.

        Raises:
            FormatError: naming the first corrupt shard or file.
        """
        for i, shard in enumerate(shards):
            _check_shard(self.root, manifest, shard)
            self.verified.add(i)
            if progress is not None:
                progress(i)
        for rel, crc in zip(manifest.event_logs, manifest.event_log_crcs):
            check_event_log(resolve_inside(self.root, rel, str(self.root / "dataset.json")), crc)
        if manifest.episodes_crc:
            table = EpisodeTable.from_dataset(self.root, manifest.episodes)
            try:
                check_episode_table(manifest, table)
            finally:
                table.close()
        missing = uncovered(manifest)
        if missing:
            logger.warning("%s: no checksum covers %s (written before they were recorded)", self.root,
                           ", ".join(missing))
