"""Download public Google Cloud Storage prefixes without gsutil.

Only an anonymous client is ever built: public buckets such as Google's
``atari-replay-datasets`` need no credentials, and default credentials found
on the machine are never picked up. When ``STORAGE_EMULATOR_HOST`` is set
(``http://host:port``), google-cloud-storage sends every request there instead
of ``storage.googleapis.com``.

Each object is written to ``<name>.part`` first. An existing ``.part`` is
resumed with a ranged request from its current size; the whole file is then
checked against the object's crc32c from the listing (base64 of the
big-endian CRC32C, as in GCS metadata), else its md5Hash, else only its size
(with a warning), and fetched again from scratch on a mismatch. Only a
verified file is renamed to its final name, so a final name always holds a
complete, checked object; a final file that already matches is skipped.

Failures end the call within a bounded time (see :mod:`.gcs_retry`): a server
that cannot be reached (or accepts the connection and never answers) fails
the listing at once with :class:`~.gcs_errors.SourceUnreachableError`; a
reachable server's transient errors are retried, and an object that receives
no data for ``deadline`` seconds ends the call with
:class:`~.gcs_errors.DownloadStalledError`, its ``.part`` kept for the next
run to resume. Each message says everything its cause would (host, what
happened, which timeout expired), so the error is raised without the chain of
library exceptions behind it.

Object names are untrusted: a name that would land outside ``dest``
(``..`` parts, absolute paths, backslashes, NUL) is refused before anything
is written.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import threading
from collections.abc import Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path, PurePosixPath
from typing import Any

from ..progress import ProgressBar
from ..validation import user_path
from ..remote.gcs_client import anonymous_client, api_exceptions, list_blobs, location
from ..remote.gcs_errors import RemoteSourceError
from ..remote.gcs_fetch import Transfer, fetch_object, file_crc32c
from ..remote.gcs_retry import Cancelled, check_deadline

__all__ = [
    "DEFAULT_DEADLINE",
    "anonymous_client",
    "download_prefix",
    "file_crc32c",
    "list_objects",
    "location",
]

logger = logging.getLogger(__name__)

DEFAULT_DEADLINE = 600.0
_WAYS_OUT = (
    "point at a reachable mirror with `bucket=` or STORAGE_EMULATOR_HOST=http://host:port, "
    "or convert files already on disk with `local_dir=`"
)


_ADVICE = (
    "expected public objects there. Point at a mirror with `bucket=`/`prefix=`, or fetch the files another "
    "way and convert them from a local replay_logs directory (`local_dir=`)"
)


def _source_error(bucket: str, prefix: str, what: str) -> RemoteSourceError:
    return RemoteSourceError(f"{what} at {location(bucket, prefix)}; {_ADVICE}")


def list_objects(
    bucket: str, prefix: str, *, pattern: str | None = None, client: Any = None,
    deadline: float = DEFAULT_DEADLINE,
) -> list[Any]:
    """List the objects under ``gs://bucket/prefix``, sorted by name.

    Args:
        bucket: bucket name.
        prefix: object name prefix, e.g. ``"dqn/Pong/1/replay_logs/"``.
        pattern: optional ``fnmatch`` pattern on the name relative to ``prefix``.
        client: a storage client; an anonymous one by default.
        deadline: seconds the listing may take, transient errors (resets, 5xx) and
            their retries included.

    Returns:
        The matching ``Blob`` objects (with size and checksums from the listing).

    Raises:
        SourceUnreachableError: the server cannot be reached or does not answer
            (raised at the first request, within ``CONNECT_TIMEOUT`` or
            ``READ_TIMEOUT`` seconds, at most ``deadline``), or kept failing for
            ``deadline`` seconds.
        RemoteSourceError: the bucket is missing or forbidden, or nothing matches.
    """
    client = anonymous_client() if client is None else client
    return list_blobs(bucket, prefix, client=client, deadline=deadline, advice=_ADVICE, ways_out=_WAYS_OUT,
                      pattern=pattern)


def _relative_path(name: str, prefix: str, bucket: str) -> PurePosixPath:
    """Map an untrusted object name to a safe path relative to ``dest``."""
    rel = name.removeprefix(prefix)
    parts = rel.split("/")
    bad = (
        not rel
        or "\x00" in rel
        or "\\" in rel
        or rel.startswith("/")
        or re.match(r"^[A-Za-z]:", rel) is not None
        or any(p in ("", ".", "..") for p in parts)
    )
    if bad:
        raise ValueError(
            f"object {name!r} in bucket {bucket!r} would be written outside the "
            "destination directory (empty, '.', '..' or absolute parts, backslash "
            "or NUL); expected a plain relative name; refusing to download it"
        )
    return PurePosixPath(*parts)


def download_prefix(
    bucket: str,
    prefix: str,
    dest: str | Path,
    *,
    pattern: str | None = None,
    threads: int = 8,
    client: Any = None,
    progress: bool = True,
    retries: int = 2,
    blobs: Iterable[Any] | None = None,
    deadline: float = DEFAULT_DEADLINE,
) -> list[Path]:
    """Download every object under ``gs://bucket/prefix`` into ``dest``.

    Files keep their names relative to ``prefix``. Interrupted downloads resume,
    every file is verified against its crc32c (else md5, else size), complete
    files are skipped.

    Args:
        bucket: bucket name.
        prefix: object name prefix, e.g. ``"dqn/Pong/1/replay_logs/"``.
        dest: destination directory (created if needed).
        pattern: optional ``fnmatch`` pattern on the relative name.
        threads: number of parallel downloads.
        client: a storage client; an anonymous one by default.
        progress: show a progress bar in bytes.
        retries: fresh downloads allowed after a checksum mismatch, per file.
        blobs: objects already listed under ``prefix`` (skips the listing;
            ``pattern`` still applies).
        deadline: seconds an object may go without receiving data, transient
            errors and their retries included, before the call fails; also the
            listing's retry budget. Time spent receiving data does not count, so
            large files on slow links are fine.

    Returns:
        The local paths, in object-name order.

    Raises:
        SourceUnreachableError: the server cannot be reached (at the listing).
        RemoteSourceError: the bucket is missing or forbidden, or nothing matches.
        DownloadStalledError: an object got no data for ``deadline`` seconds; the
            ``.part`` files are kept and a new call resumes them.
        ValueError: an object name would resolve outside ``dest``.
        ChecksumMismatchError: a file kept failing its checksum check.
    """
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"`threads` must be a positive int, got {threads!r}")
    if not isinstance(retries, int) or retries < 0:
        raise ValueError(f"`retries` must be a non-negative int, got {retries!r}")
    deadline = check_deadline(deadline)
    client = anonymous_client() if client is None else client
    if blobs is None:
        blobs = list_objects(bucket, prefix, pattern=pattern, client=client, deadline=deadline)
    elif pattern is not None:
        blobs = [b for b in blobs if fnmatch.fnmatchcase(b.name[len(prefix) :], pattern)]
    blobs = list(blobs)
    for b in blobs:
        if not isinstance(b.size, int) or b.size < 0:
            raise _source_error(bucket, b.name, f"the listing gives no valid size ({b.size!r})")
    dest = user_path(dest, "dest")
    targets = [dest.joinpath(_relative_path(b.name, prefix, bucket)) for b in blobs]
    dest.mkdir(parents=True, exist_ok=True)
    total = sum(b.size for b in blobs)
    logger.info("downloading %d objects (%d bytes) from %s to %s", len(blobs), total, location(bucket, prefix), dest)
    exc = api_exceptions()
    lock = threading.Lock()
    with ProgressBar(f"download {location(bucket, prefix)}", total, unit="B", enabled=progress) as bar:

        def on_bytes(n: int) -> None:
            with lock:
                bar.update(n)

        t = Transfer(client=client, retries=retries, deadline=deadline, on_bytes=on_bytes,
                      cancel=threading.Event())

        def one(i: int) -> None:
            try:
                fetch_object(blobs[i], targets[i], t)
            except (exc.NotFound, exc.Forbidden) as err:
                raise _source_error(bucket, blobs[i].name, f"object unreadable (HTTP {err.code})") from None

        with ThreadPoolExecutor(max_workers=min(threads, max(len(blobs), 1))) as pool:
            futures = [pool.submit(one, i) for i in range(len(blobs))]
            try:
                wait(futures, return_when=FIRST_EXCEPTION)
            finally:  # on a failure or an interrupt: stop the others; .part files resume later
                if not all(f.done() and f.exception() is None for f in futures):
                    t.cancel.set()
                    for future in futures:
                        future.cancel()
        for future in futures:
            err = None if future.cancelled() else future.exception()
            if err is not None and not isinstance(err, Cancelled):
                raise err
    return targets
