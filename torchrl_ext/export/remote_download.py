"""Fetching only what a query needs from a remote dataset, and downloading a selection as a local dataset.

:func:`prefetch` resolves a query (an episode filter and event windows, see
:mod:`.row_selection`) to the shards its rows lie in and brings exactly
those into the local cache, verified, in parallel; its
:class:`PrefetchResult` compares the bytes fetched with the bytes the rows
occupy. :func:`download_dataset` (``torchrl-ext download gs://bucket/prefix
--root R``) fetches the shards of the selected episodes and writes those
episodes, whole and renumbered from 0, with their episode-table rows and
events, as an ordinary dataset at ``R`` (:func:`~torchrl_ext.export.export_episodes`).

The storage layer cannot see the event index, so this is a function over a
storage (``torchrl_ext.prefetch(storage, ...)``), not a storage method.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..events import EventIndex
from ..events.index import derivation_arguments
from ..format import read_manifest
from ..progress import ProgressBar
from ..storages import EpisodeView, ShardedStorage
from ..validation import nonnegative_int, positive_int, user_path
from .dataset import export_episodes
from .row_selection import needed_bytes, select_rows, window_query

__all__ = ["DownloadResult", "PrefetchResult", "download_dataset", "prefetch"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrefetchResult:
    """What a :func:`prefetch` selected and fetched.

    Attributes:
        shards: the shards the selected rows (and the next rows a read needs) lie in.
        fetched: those of ``shards`` that were not cached and were fetched by this call.
        bytes_fetched: bytes downloaded by this call.
        shard_bytes: bytes of ``shards`` (what a cold cache downloads).
        rows: rows the query selects.
        bytes_needed: bytes those rows occupy (:func:`~.row_selection.needed_bytes`).
    """

    shards: tuple[int, ...]
    fetched: tuple[int, ...]
    bytes_fetched: int
    shard_bytes: int
    rows: int
    bytes_needed: int

    @property
    def ratio(self) -> float:
        """``shard_bytes / bytes_needed``: how much more than the selected rows a cold fetch reads (1.0 at best)."""
        if self.bytes_needed == 0:
            return 1.0 if self.shard_bytes == 0 else float("inf")
        return self.shard_bytes / self.bytes_needed


def prefetch(storage: ShardedStorage | EpisodeView, where: str | None = None, event_regex: str | None = None,
             win_len: int | None = None, bias: int = 0, *, threads: int = 8, progress: bool = True) -> PrefetchResult:
    """Fetches into the cache exactly the shards a query reads (a local dataset has them all: nothing happens).

    Args:
        storage: a :class:`~torchrl_ext.ShardedStorage` (of a URL, or local) or an
            :class:`~torchrl_ext.storages.EpisodeView` (only its episodes).
        where: SQL ``WHERE`` over the episode table (None: every episode).
        event_regex, win_len, bias: only the rows of windows around matching events (the
            rule of :class:`~torchrl_ext.events.EventWindowDataset`); None: whole episodes.
        threads: shards fetched at once.
        progress: show a progress bar in bytes.

    Returns:
        A :class:`PrefetchResult`. With ``disk_cache_bytes`` smaller than its
        ``shard_bytes``, the first shards may be evicted before they are read
        (a warning says so).

    Raises:
        ValueError, TypeError: a bad filter or window rule (before anything is fetched).
        RemoteSourceError, FormatError: a shard is missing remotely or fails its checksum.
    """
    positive_int(threads, "threads")
    selection = select_rows(storage, where, event_regex, win_len, bias)
    base = storage.base if isinstance(storage, EpisodeView) else storage
    manifest = base.manifest
    shards = [int(s) for s in selection.shards]
    shard_bytes = sum(manifest.shards[s].bytes for s in shards)
    needed = needed_bytes(manifest, base.offsets, selection.rows)
    remote = base.reader.remote
    missing: list[int] = []
    fetched_bytes = 0
    if remote is not None:
        missing = [s for s in shards if not remote.cache.present(manifest.shards[s])]
        budget = remote.cache.budget
        if budget is not None and shard_bytes > budget:
            logger.warning("%s: the %d shards the query reads hold %d bytes, more than disk_cache_bytes=%d; the "
                           "first may be evicted before they are read", remote.url, len(shards), shard_bytes, budget)
        before = remote.bytes_fetched()
        with ProgressBar(f"fetch {remote.url}", sum(manifest.shards[s].bytes for s in missing), unit="B",
                         enabled=progress) as bar:

            def one(s: int) -> None:
                remote.unpin(remote.pin(s))
                bar.update(manifest.shards[s].bytes)

            with ThreadPoolExecutor(max_workers=max(1, min(threads, len(missing)))) as pool:
                list(pool.map(one, missing))
        fetched_bytes = remote.bytes_fetched() - before
        logger.info("%s: fetched %d of the %d shards the query reads (%d bytes); %d rows need %d bytes", remote.url,
                    len(missing), len(shards), fetched_bytes, len(selection.rows), needed)
    return PrefetchResult(shards=tuple(shards), fetched=tuple(missing), bytes_fetched=fetched_bytes,
                          shard_bytes=shard_bytes, rows=int(selection.rows.size),
                          bytes_needed=needed)


@dataclass(frozen=True)
class DownloadResult:
    """What :func:`download_dataset` wrote.

    Attributes:
        root: the new local dataset.
        episodes: the source's episode ids, in the order (and so with the new ids 0, 1, ...) written.
        prefetch: the shards fetched for them.
    """

    root: Path
    episodes: np.ndarray
    prefetch: PrefetchResult


def download_dataset(url: str | os.PathLike, root: str | os.PathLike, where: str | None = None,
                     event_regex: str | None = None, win_len: int | None = None, bias: int = 0, *,
                     cache_dir: str | os.PathLike | None = None, disk_cache_bytes: int | None = None,
                     threads: int = 8, progress: bool = True) -> DownloadResult:
    """Writes the episodes a query selects from a dataset in a bucket as a local dataset at ``root``.

    Episodes are materialised whole, renumbered from 0 in the source's order,
    with their episode-table rows and events (and a saved event index, with
    the source index's derivations); only the shards those episodes lie in are
    fetched. A run again with the same arguments resumes an interrupted one.

    Args:
        url: the dataset's URL (``gs://bucket/prefix``, pushed with
            :func:`torchrl_ext.remote.publish.push`), or a local dataset directory.
        root: the new dataset directory.
        where: SQL ``WHERE`` over the episode table, e.g. ``"Score >= 100"`` (None: every episode).
        event_regex: keep the episodes holding at least one window around an event whose
            name matches (``re.match``, the rule of :class:`~torchrl_ext.events.EventWindowDataset`).
        win_len, bias: the windows' length (required with ``event_regex``) and offset.
        cache_dir: where the remote dataset is cached (default ``$TORCHRL_EXT_CACHE`` or
            ``~/.cache/torchrl_ext/remote``).
        disk_cache_bytes: bytes the cached shards may occupy (None: no limit).
        threads: shards fetched at once.
        progress: show progress bars.

    Returns:
        A :class:`DownloadResult`; ``ShardedStorage(result.root)`` reads it.

    Raises:
        ValueError: a bad filter or window rule, or one that selects no episode (before any
            shard is fetched or anything is written).
        RemoteSourceError: no dataset at ``url``, or an object missing remotely.
        FormatError: a fetched file fails its checksum.
    """
    window_query(event_regex, win_len, bias)  # refused before the bucket is asked anything
    positive_int(threads, "threads")
    nonnegative_int(disk_cache_bytes, "disk_cache_bytes", allow_none=True)
    dest = user_path(root, "root")
    storage = ShardedStorage(url, cache_dir=cache_dir, disk_cache_bytes=disk_cache_bytes)
    try:
        selection = select_rows(storage, where, event_regex, win_len, bias)
        if selection.episodes.size == 0:
            asked = " and ".join(f"`{name}` {value!r}" for name, value in
                                 (("where", where), ("event_regex", event_regex)) if value is not None)
            raise ValueError(f"{asked or 'the query'} selects no episode of {url} ({storage.num_episodes} episodes);"
                             " widen the filter")
        view = EpisodeView(storage, episodes=selection.episodes)
        fetched = prefetch(view, threads=threads, progress=progress)
        export_episodes(view, dest, progress=progress, operation="download")
        _save_event_index(storage, dest)
    finally:
        storage.reader.close()
    logger.info("downloaded %d episodes (%d shards of %d fetched, %d bytes) of %s into %s",
                selection.episodes.size, len(fetched.fetched), storage.num_shards, fetched.bytes_fetched, url, dest)
    return DownloadResult(root=dest, episodes=selection.episodes, prefetch=fetched)


def _save_event_index(source: ShardedStorage, dest: Path) -> None:
    """Saves ``dest``'s event index with the derivations of the source's saved index, when there are events."""
    try:
        derived = EventIndex.load(source.root).derived
    except FileNotFoundError:
        derived = []
    if derived or read_manifest(dest).event_logs:
        EventIndex.build(dest, **derivation_arguments(derived))
