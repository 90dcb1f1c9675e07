"""Publishing a dataset directory to a bucket: resumable, parallel, the manifest last.

Every file the manifest names (shard files, episode table, event logs and
index, dictionaries) is uploaded under ``prefix``; an object whose crc32c
already equals the local file's is skipped, so a push killed mid-way resumes
where it stopped. ``dataset.json`` is uploaded last, after every other
upload succeeded: a reader opening the URL sees either no dataset, or the
previous complete one, or the new complete one, never half of one. Local
files are read inside the dataset root only (symlinks resolved).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..format import read_manifest
from ..format.files import inside_root
from ..progress import ProgressBar
from ..validation import positive_int, user_path
from .dataset import metadata_names, shard_names
from .gcs_errors import RemoteSourceError, SourceUnreachableError
from .gcs_fetch import file_crc32c
from .stores import open_store
from .urls import parse_url

__all__ = ["PushResult", "dataset_files", "push"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PushResult:
    """What a push did: objects uploaded and skipped (already there), and bytes uploaded."""

    url: str
    uploaded: int
    skipped: int
    bytes_uploaded: int


def dataset_files(root: Path) -> list[str]:
    """Every file of the dataset at ``root`` a reader may fetch, relative to it, ``dataset.json`` last."""
    manifest = read_manifest(root)
    names = []
    for shard in manifest.shards:
        names += shard_names(manifest, shard)
    names += [n for n in metadata_names(manifest, _LocalIndex(root)) if (root / n).exists()]
    return sorted(set(names)) + ["dataset.json"]


class _LocalIndex:
    """The one listing :func:`metadata_names` asks for (the saved event index), from the local directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def list(self, rel_prefix: str) -> dict[str, Any]:
        d = self.root / rel_prefix
        if not d.is_dir():
            return {}
        return {p.relative_to(self.root).as_posix(): None for p in sorted(d.rglob("*")) if p.is_file()}


def push(root: str | os.PathLike, url: str, *, threads: int = 8, client: Any = None,
         progress: bool = True) -> PushResult:
    """Uploads the dataset at ``root`` to ``url`` (``gs://bucket/prefix``; other schemes through fsspec).

    Args:
        root: a dataset directory.
        url: where to publish it; readers open this URL.
        threads: parallel uploads.
        client: a google-cloud-storage client (default: the default credentials'
            client, or the emulator's when ``STORAGE_EMULATOR_HOST`` is set).
        progress: show a progress bar in bytes.

    Returns:
        A :class:`PushResult`.

    Raises:
        FormatError: ``root`` is not a readable dataset, or a file it names lies outside it.
        ValueError: ``url`` is not a URL.
        RemoteSourceError: the bucket is missing or may not be written.
    """
    positive_int(threads, "threads")
    root = user_path(root, "root")
    parsed = parse_url(url, "url")
    names = dataset_files(root)
    for n in names:
        inside_root(root, root / n)
    store = open_store(parsed, write=True, client=client)
    try:
        remote = store.list("")
    except SourceUnreachableError:
        raise
    except RemoteSourceError as err:  # a missing or forbidden bucket
        why = str(err).split(" at ", 1)[0]
        raise RemoteSourceError(f"cannot push to {parsed.url}: {why}; check the bucket name and that your "
                                "credentials may write to it") from None
    todo, skipped = [], 0
    for n in names[:-1]:
        have = remote.get(n)
        local = root / n
        if have is not None and have.crc32c is not None and have.size == local.stat().st_size and \
                have.crc32c == file_crc32c(local):  # without a crc32c (fsspec), equal sizes prove nothing
            skipped += 1
            continue
        todo.append(n)
    total = sum((root / n).stat().st_size for n in todo)
    logger.info("pushing %s to %s: %d files (%d bytes), %d already there", root, parsed.url, len(todo), total,
                skipped)
    with ProgressBar(f"push {parsed.url}", total, unit="B", enabled=progress) as bar:

        def one(n: str) -> None:
            store.put(root / n, n)
            bar.update((root / n).stat().st_size)

        with ThreadPoolExecutor(max_workers=min(threads, max(len(todo), 1))) as pool:
            list(pool.map(one, todo))
    store.put(root / "dataset.json", "dataset.json")  # the commit point
    return PushResult(parsed.url, len(todo) + 1, skipped, total + (root / "dataset.json").stat().st_size)
