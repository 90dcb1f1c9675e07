"""The local cache of a remote dataset: one directory per URL, shared by the processes of a host.

Layout of ``<cache_dir>/<name>-<hash of the URL>/``::

    remote.json                 the URL this directory caches (written first)
    dataset.json, episodes.sqlite, events/, dicts/
                                the dataset's metadata, as in any dataset directory
    shards/NNNNNN/              the shards fetched so far, each complete and verified
    .cache/locks/NNNNNN.lock    one lock file per shard, held shared by its readers; its mtime is its last use
    .cache/locks/NNNNNN.fetch   held exclusively while the shard is fetched
    .cache/open.lock            held while the metadata is refreshed
    .cache/staging/             downloads in progress and shards being evicted

Coordination is by ``flock`` on the lock files only (no shared memory, so
nothing goes stale when a process dies: the kernel drops its locks). A shard
is fetched under the exclusive lock of its ``.fetch`` file, so two processes
wanting it cause one download; a reader holds a shared lock on the ``.lock``
file of every shard it has open; eviction takes that lock exclusively without
waiting and skips a shard someone holds, so a live reader's shard is never
evicted. The two locks are apart so that a process waiting for a fetch never
waits for the readers of the shard it then finds present. A shard enters ``shards/`` by one
``rename`` of a directory verified in ``staging/``, and leaves by one
``rename`` back into ``staging/``: a process killed at any point leaves either
a complete shard or nothing under ``shards/``. Staging directories nobody
holds are removed when the cache opens.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import re
import shutil
import time
import uuid
from pathlib import Path

from ..format import Manifest, ShardInfo, atomic_write_json
from ..format.files import read_json_object
from .urls import RemoteURL

__all__ = ["MARKER_NAME", "ShardCache", "cache_root", "default_cache_dir"]

logger = logging.getLogger(__name__)

MARKER_NAME = "remote.json"
_PRIVATE = ".cache"


def default_cache_dir() -> Path:
    """``$TORCHRL_EXT_CACHE`` or ``~/.cache/torchrl_ext/remote``."""
    env = os.environ.get("TORCHRL_EXT_CACHE")
    return Path(os.path.expanduser(env)) if env else Path.home() / ".cache" / "torchrl_ext" / "remote"


def cache_root(url: RemoteURL, cache_dir: Path) -> Path:
    """The cache directory of ``url``: readable name, plus a hash that keeps different URLs apart."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{url.bucket}-{url.prefix}").strip("-.")[:80] or "dataset"
    digest = hashlib.sha256(url.url.encode()).hexdigest()[:12]
    return cache_dir / f"{slug}-{digest}"


def _open_lock(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)


class ShardCache:
    """Locks, pins, accounting and eviction of the shards under one cache root.

    Args:
        root: the cache root (see the module docstring).
        budget: bytes the fetched shards may occupy (None: no limit).
    """

    def __init__(self, root: Path, budget: int | None) -> None:
        self.root = root
        self.budget = budget
        self.private = root / _PRIVATE
        self.locks = self.private / "locks"
        self.staging = self.private / "staging"
        for d in (self.locks, self.staging, root / "shards"):
            d.mkdir(parents=True, exist_ok=True)

    # ----------------------------------------------------------------- marker
    @staticmethod
    def read_marker(root: Path) -> str | None:
        """The URL a cache root caches, or None when ``root`` is not a cache root."""
        if not (root / MARKER_NAME).is_file():
            return None
        data = read_json_object(root, root / MARKER_NAME, max_bytes=1 << 16, expected="a remote cache marker")
        url = data.get("url")
        return url if isinstance(url, str) else None

    def write_marker(self, url: str) -> None:
        atomic_write_json(self.root / MARKER_NAME, {"url": url, "version": 1})

    # ----------------------------------------------------------------- locks
    def lock_path(self, shard: ShardInfo) -> Path:
        return self.locks / (shard.dir.replace("/", "_") + ".lock")

    def fetch_lock_path(self, shard: ShardInfo) -> Path:
        return self.locks / (shard.dir.replace("/", "_") + ".fetch")

    def open_lock(self) -> int:
        """The exclusive lock of a metadata refresh (a descriptor to close when done)."""
        fd = _open_lock(self.private / "open.lock")
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def staging_dir(self) -> Path:
        d = self.staging / f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        d.mkdir()
        return d

    def clean_staging(self) -> None:
        """Removes staging directories left by processes that are gone (their pid is not running)."""
        for d in self.staging.iterdir():
            pid = d.name.split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                shutil.rmtree(d, ignore_errors=True)

    def present(self, shard: ShardInfo) -> bool:
        return (self.root / shard.dir).is_dir()

    def pin(self, shard: ShardInfo, fetch) -> int:
        """Makes ``shard`` present (``fetch(shard)`` under its exclusive lock when missing) and returns a
        descriptor holding its shared lock; :meth:`unpin` releases it. Two processes pinning a missing
        shard cause one fetch."""
        fd = _open_lock(self.lock_path(shard))
        try:
            while True:
                if not self.present(shard):
                    self._fetch_once(shard, fetch)
                fcntl.flock(fd, fcntl.LOCK_SH)
                if self.present(shard):  # else evicted between the fetch and the lock: again
                    _mark_used(fd)
                    return fd
                fcntl.flock(fd, fcntl.LOCK_UN)
        except BaseException:
            os.close(fd)
            raise

    def _fetch_once(self, shard: ShardInfo, fetch) -> None:
        """``fetch(shard)`` under the shard's fetch lock, unless another process brought it in meanwhile."""
        fd = _open_lock(self.fetch_lock_path(shard))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if not self.present(shard):
                fetch(shard)
        finally:
            os.close(fd)

    @staticmethod
    def unpin(fd: int) -> None:
        os.close(fd)  # drops the shared lock

    def touch(self, shard: ShardInfo) -> None:
        try:
            _mark_used(self.lock_path(shard))
        except FileNotFoundError:
            pass

    # ----------------------------------------------------------------- eviction
    def used_bytes(self, manifest: Manifest) -> int:
        return sum(s.bytes for s in manifest.shards if self.present(s))

    def evict(self, manifest: Manifest, keep: int = 0) -> int:
        """Evicts least recently used shards nobody holds until the fetched shards fit the budget
        with ``keep`` bytes to spare; returns the bytes freed."""
        if self.budget is None:
            return 0
        present = [s for s in manifest.shards if self.present(s)]
        used = sum(s.bytes for s in present)
        freed = 0

        def last_use(s: ShardInfo) -> int:
            try:
                return self.lock_path(s).stat().st_mtime_ns
            except FileNotFoundError:
                return 0

        for shard in sorted(present, key=last_use):
            if used - freed + keep <= self.budget:
                break
            fd = _open_lock(self.lock_path(shard))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    continue  # a live reader holds it
                raise
            try:
                if self.present(shard):
                    gone = self.staging_dir() / "evicted"
                    os.rename(self.root / shard.dir, gone)
                    shutil.rmtree(gone.parent, ignore_errors=True)
                    freed += shard.bytes
                    logger.debug("evicted %s (%d bytes) from %s", shard.dir, shard.bytes, self.root)
            finally:
                os.close(fd)
        if used - freed + keep > self.budget:
            logger.info("%s: %d bytes of shards in use exceed disk_cache_bytes=%d; live shards are kept",
                        self.root, used - freed + keep, self.budget)
        return freed


def _mark_used(lock: int | Path) -> None:
    """Sets a lock file's mtime to now, from the clock in nanoseconds: the kernel's own "now" advances
    once a tick (up to 10 ms), which would tie shards used one after the other in the LRU order."""
    now = time.time_ns()
    os.utime(lock, ns=(now, now))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
