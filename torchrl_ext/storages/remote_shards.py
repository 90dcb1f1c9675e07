"""The shards a reader of a remote dataset has open: fetched on first touch, held while open.

A :class:`~torchrl_ext.remote.RemoteDataset` brings a shard into the local
cache (verified) and returns a shared lock that keeps it from eviction; the
reader opens the shard's files then. A reader keeps at most ``max_open``
shards open, closing (and releasing) the least recently used, so the shards
it holds fit the cache budget.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from typing import Any

import numpy as np

from .shard_files import ShardFiles

__all__ = ["RemoteShards"]


class RemoteShards:
    """Opening and closing the lazily opened shards of one reader.

    Args:
        remote: the :class:`~torchrl_ext.remote.RemoteDataset` of the reader's root.
        files: the reader's lazily opened shard files.
        max_open: shards kept open at most (None: no limit).
    """

    def __init__(self, remote: Any, files: ShardFiles, max_open: int | None) -> None:
        self.remote = remote
        self.files = files
        self.max_open = max_open
        self.held: OrderedDict[int, int] = OrderedDict()  # shard -> lock descriptor, least recent first
        self.lock = threading.RLock()  # held by the reader around a read that may open or close shards
        weakref.finalize(self, _close_all, self.held)  # a reader dropped without close() releases its shards

    @classmethod
    def for_budget(cls, remote: Any, files: ShardFiles) -> RemoteShards:
        budget = remote.cache.budget
        biggest = max((s.bytes for s in files.shards), default=1) or 1
        return cls(remote, files, None if budget is None else max(1, budget // biggest))

    def touch(self, rows: np.ndarray) -> bool:
        """Opens every shard holding one of ``rows`` (the reader passes the next rows it rebuilds
        ``("next", K)`` from too); True when one was opened. Missing shards are fetched in parallel."""
        if rows.size == 0:
            return False
        needed = np.unique(np.searchsorted(self.files.offsets, rows, side="right") - 1).tolist()
        new = [s for s in needed if s not in self.held]
        missing = [s for s in new if not self.remote.cache.present(self.files.shards[s])]
        if len(missing) > 1:
            self.remote.fetch(missing, threads=min(len(missing), 8))  # then pinned below, one at a time
        for s in needed:
            if s in self.held:
                self.held.move_to_end(s)
                continue
            fd = self.remote.pin(s)
            try:
                self.files.open_shard(s)
            except BaseException:
                self.remote.unpin(fd)
                raise
            self.held[s] = fd
        if self.max_open is not None:
            for s in list(self.held)[: max(0, len(self.held) - max(self.max_open, len(needed)))]:
                if s not in needed:
                    self.release(s)
        return bool(new)

    def will_need(self, shards: list[int]) -> None:
        """Fetches the shards a sampler names next, in the background, as many as the budget leaves room for
        beside the shards this reader holds (a prefetched shard evicted before its read is fetched twice)."""
        wanted = [int(s) for s in shards if int(s) not in self.held]
        if self.max_open is not None:
            wanted = wanted[: max(0, self.max_open - len(self.held))]
        self.remote.prefetch(wanted)

    def release(self, s: int) -> None:
        self.files.close_shard(s)
        self.remote.unpin(self.held.pop(s))

    def close(self) -> None:
        for s in list(self.held):
            self.release(s)
        self.remote.close()


def _close_all(held: dict[int, int]) -> None:
    for fd in held.values():
        try:
            os.close(fd)
        except OSError:
            pass
    held.clear()
