"""A dataset in a bucket, read through a local cache: metadata at open, shards on first touch.

Opening fetches ``dataset.json`` (its self-checksum checked), the episode
table (its content checksum checked against the manifest), the event logs
(crc32 in the manifest), the saved event index and the compression
dictionaries (crc in the column options), into a staging directory; only
then do they replace the cached copies, ``dataset.json`` last. A cache whose
``dataset.json`` has the remote object's crc32c is used as it is: one request.

A shard is fetched whole, into staging, checked against the manifest's shard
checksum (and its ``meta.json`` crcs) and renamed into ``shards/``: nothing
unverified is ever served, and a killed fetch leaves nothing a reader sees.
:class:`~.cache.ShardCache` shares the cache between processes and keeps it
within ``disk_cache_bytes``.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..format import (
    DICTIONARY_OPTIONS,
    EpisodeTable,
    FormatError,
    Manifest,
    ShardInfo,
    check_event_log,
    final_columns,
    load_dictionaries,
    read_manifest,
    shard_files,
    verify_shard,
)
from ..format.checksum import check_td_meta
from .cache import ShardCache, cache_root, default_cache_dir
from .gcs_errors import RemoteSourceError
from .gcs_fetch import file_crc32c
from .stores import DEFAULT_DEADLINE, ObjectInfo, open_store
from .urls import RemoteURL, parse_url

__all__ = ["RemoteDataset", "metadata_names", "shard_names"]

logger = logging.getLogger(__name__)

_FETCH_THREADS = 8


class RemoteDataset:
    """The local cache of one remote dataset, and the fetching of its files.

    Build it with :meth:`open` (a URL: refreshes the metadata) or
    :meth:`attach` (a cache root already opened, e.g. in a DataLoader worker).

    Attributes:
        url: the dataset's URL.
        root: the cache root, laid out like a dataset directory.
        manifest: the cached manifest.
        cache: locks, pins and eviction of the cached shards.
    """

    def __init__(self, url: str, root: Path, cache: ShardCache, *, client: Any = None,
                 deadline: float = DEFAULT_DEADLINE) -> None:
        self.url = url
        self.root = root
        self.cache = cache
        self._client = client
        self._deadline = deadline
        self._store: Any = None
        self._store_lock = threading.Lock()
        self._prefetch: ThreadPoolExecutor | None = None
        self._pid = os.getpid()
        self.manifest: Manifest = read_manifest(root)

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, url: str, *, cache_dir: str | os.PathLike | None = None, disk_cache_bytes: int | None = None,
             client: Any = None, deadline: float = DEFAULT_DEADLINE) -> RemoteDataset:
        """Opens ``url`` (``gs://bucket/prefix``...) through the cache under ``cache_dir``.

        Raises:
            RemoteSourceError: no dataset at ``url``, or an object missing.
            SourceUnreachableError: the server cannot be reached.
            FormatError: a fetched file fails its checksum.
        """
        parsed = parse_url(url, "root")
        base = default_cache_dir() if cache_dir is None else Path(os.path.expanduser(os.fspath(cache_dir)))
        root = cache_root(parsed, base)
        root.mkdir(parents=True, exist_ok=True)
        cache = ShardCache(root, disk_cache_bytes)
        store = open_store(parsed, client=client, deadline=deadline)
        fd = cache.open_lock()
        try:
            cache.clean_staging()
            cache.write_marker(parsed.url)
            _refresh_metadata(store, parsed, cache)
        finally:
            os.close(fd)
        remote = cls(parsed.url, root, cache, client=client, deadline=deadline)
        remote._store = store
        return remote

    @classmethod
    def attach(cls, root: Path, *, disk_cache_bytes: int | None = None) -> RemoteDataset | None:
        """The remote dataset cached at ``root``, or None when ``root`` is an ordinary dataset."""
        url = ShardCache.read_marker(root)
        if url is None:
            return None
        return cls(url, root, ShardCache(root, disk_cache_bytes))

    def _own(self) -> None:
        """In a forked child, forgets the parent's store (its keep-alive connections would be shared
        with the parent), its prefetch threads (not running here) and its lock (maybe held at the fork)."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._store_lock = threading.Lock()
            self._store = None
            self._prefetch = None

    @property
    def store(self) -> Any:
        self._own()
        with self._store_lock:
            if self._store is None:
                self._store = open_store(self.url, client=self._client, deadline=self._deadline)
            return self._store

    # ------------------------------------------------------------------ shards
    def pin(self, s: int) -> int:
        """Makes shard ``s`` present (fetched and verified when missing) and holds it: returns the
        descriptor to give to :meth:`unpin`."""
        return self.cache.pin(self.manifest.shards[s], self._fetch_shard)

    def unpin(self, fd: int) -> None:
        self.cache.unpin(fd)

    def fetch(self, shards: Iterable[int], threads: int = 4) -> None:
        """Brings the given shards into the cache (in parallel), without holding them."""
        ids = sorted({int(s) for s in shards})
        with ThreadPoolExecutor(max_workers=max(1, min(threads, len(ids) or 1))) as pool:
            for fd in pool.map(self.pin, ids):
                self.unpin(fd)

    def prefetch(self, shards: Iterable[int]) -> None:
        """Fetches the given shards in the background (two at a time); failures are left for the read."""
        missing = [int(s) for s in shards if not self.cache.present(self.manifest.shards[int(s)])]
        if not missing:
            return
        self._own()
        if self._prefetch is None:
            self._prefetch = ThreadPoolExecutor(max_workers=2, thread_name_prefix="torchrl_ext-prefetch")
        for s in missing:
            self._prefetch.submit(self._prefetch_one, s)

    def _prefetch_one(self, s: int) -> None:
        try:
            self.unpin(self.pin(s))
        except Exception as err:  # noqa: BLE001 - the read that needs the shard raises it again
            logger.info("prefetching shard %d of %s failed: %s", s, self.url, err)

    def close(self) -> None:
        self._own()
        if self._prefetch is not None:
            self._prefetch.shutdown(wait=True, cancel_futures=True)
            self._prefetch = None

    def _fetch_shard(self, shard: ShardInfo) -> None:
        """Fetches one shard into staging, verifies it, renames it into place (called under its lock)."""
        self.cache.evict(self.manifest, keep=shard.bytes)
        wanted = shard_names(self.manifest, shard)
        listing = self.store.list(shard.dir + "/")
        missing = sorted(set(wanted) - set(listing))
        if missing:
            raise RemoteSourceError(
                f"{self.url}{shard.dir}: {len(missing)} files of the shard are missing remotely "
                f"(e.g. {missing[0]}); the dataset was not pushed completely: push it again"
            )
        staging = self.cache.staging_dir()
        try:
            _fetch_all(self.store, [listing[n] for n in wanted], staging)
            try:
                verify_shard(staging, self.manifest, shard)
                if shard.meta_crcs:
                    check_td_meta(staging / shard.dir, shard.meta_crcs, root=staging)
            except FormatError as err:
                found = str(err).split(": ", 1)[-1].split(";", 1)[0]
                raise FormatError(
                    f"{self.url}{shard.dir}: {found} (as fetched; nothing was cached): the remote copy differs "
                    "from its manifest; push the dataset again"
                ) from None
            os.rename(staging / shard.dir, self.root / shard.dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        logger.debug("fetched %s of %s (%d bytes)", shard.dir, self.url, shard.bytes)

    def bytes_fetched(self) -> int:
        return 0 if self._store is None else self._store.bytes_fetched

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, root={str(self.root)!r})"


def shard_names(manifest: Manifest, shard: ShardInfo) -> list[str]:
    """The object names (relative to the dataset) of a shard's files: its checksummed files and meta.json."""
    scheme = shard.checksum.partition(":")[0]
    d = Path(shard.dir)
    groups = shard_files(d, manifest.schema, final_columns(manifest), shard.finals, scheme)
    names = {p.as_posix() for group in groups for p in group}
    names.update((d / rel).as_posix() for rel, _ in shard.meta_crcs)
    return sorted(names)


def _fetch_all(store: Any, infos: list[ObjectInfo], dest: Path) -> None:
    def one(info: ObjectInfo) -> None:
        path = dest / info.rel
        path.parent.mkdir(parents=True, exist_ok=True)
        store.fetch(info, path)

    with ThreadPoolExecutor(max_workers=max(1, min(_FETCH_THREADS, len(infos)))) as pool:
        list(pool.map(one, infos))


def metadata_names(manifest: Manifest, store: Any) -> list[str]:
    names = [manifest.episodes] if manifest.num_episodes or manifest.episodes_crc else []
    names += list(manifest.event_logs)
    for col in manifest.schema:
        rel = col.options_dict.get(DICTIONARY_OPTIONS[0])
        if isinstance(rel, str):
            names.append(rel)
    names += sorted(store.list("events/index/"))
    return names


def _refresh_metadata(store: Any, url: RemoteURL, cache: ShardCache) -> None:
    """Brings the cached metadata to the remote dataset's (under the cache's open lock)."""
    root = cache.root
    info = store.stat("dataset.json")
    if info is None:
        raise RemoteSourceError(
            f"{url.url}: no dataset.json there; expected a dataset pushed with `torchrl-ext push` "
            "(a push still running commits its dataset.json last): check the URL"
        )
    local = root / "dataset.json"
    if local.is_file() and info.crc32c is not None and file_crc32c(local) == info.crc32c:
        return
    old = read_manifest(root) if local.is_file() else None
    staging = cache.staging_dir()
    try:
        store.fetch(info, staging / "dataset.json")
        try:
            manifest = read_manifest(staging)
        except FormatError as err:
            raise _as_fetched(err, staging, url.url) from None
        names = metadata_names(manifest, store)
        listing = {}
        for name in names:
            found = store.stat(name)
            if found is None:
                raise RemoteSourceError(f"{url.url}{name}: listed by the dataset's manifest but missing "
                                        "remotely; push the dataset again")
            listing[name] = found
        _fetch_all(store, list(listing.values()), staging)
        try:
            _check_metadata(staging, manifest)
        except FormatError as err:
            raise _as_fetched(err, staging, url.url) from None
        _drop_changed_shards(cache, old, manifest)
        for name in names:
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, target)
        os.replace(staging / "dataset.json", local)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("opened %s: %d shards, %d rows, cached in %s", url.url, len(manifest.shards), manifest.num_rows,
                root)


def _check_metadata(staging: Path, manifest: Manifest) -> None:
    if manifest.num_episodes and manifest.episodes_crc:
        table = EpisodeTable.from_dataset(staging, manifest.episodes)
        try:
            found = table.content_crc(manifest.num_episodes)
        finally:
            table.close()
        if found != manifest.episodes_crc:
            raise FormatError(f"{staging / manifest.episodes}: content checksum {found}, the manifest says "
                              f"{manifest.episodes_crc}")
    for rel, crc in zip(manifest.event_logs, manifest.event_log_crcs):
        check_event_log(staging / rel, crc, root=staging)
    load_dictionaries(staging, manifest.schema)


def _as_fetched(err: FormatError, staging: Path, url: str) -> FormatError:
    """A check failed by a metadata file fetched into ``staging``, told of the remote object: its URL, and
    pushing again as the way out (instead of the staging path, gone by then, and a local remedy)."""
    where, _, found = str(err).partition(": ")
    if Path(where).is_relative_to(staging):
        where = url + Path(where).relative_to(staging).as_posix()
    return FormatError(f"{where}: {found.split(';', 1)[0]} (as fetched; nothing was cached): the copy in the "
                       "bucket is damaged or half replaced; push the dataset again")


def _drop_changed_shards(cache: ShardCache, old: Manifest | None, new: Manifest) -> None:
    """Removes cached shards whose manifest entry changed remotely (a dataset pushed again)."""
    if old is None:
        return
    keep = {(s.dir, s.checksum) for s in new.shards}
    for shard in old.shards:
        if (shard.dir, shard.checksum) not in keep and cache.present(shard):
            gone = cache.staging_dir() / "replaced"
            os.rename(cache.root / shard.dir, gone)
            shutil.rmtree(gone.parent, ignore_errors=True)
