"""One object to one file: the ``.part`` file, resume, checksum and the no-data deadline.

``fetch_object`` appends to ``<final>.part`` from its current size with ranged
requests, hashes exactly the bytes on disk, and renames to the final name only
after the whole file matches the listing's crc32c (else md5Hash, else its
size alone, with a warning). A transfer that receives no data for the
deadline raises :class:`~.gcs_errors.DownloadStalledError` and keeps the
``.part`` for the next call.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .gcs_errors import ChecksumMismatchError, DownloadStalledError
from .gcs_retry import (
    Budget,
    Cancelled,
    describe_error,
    endpoint_of,
)

__all__ = ["ExpectedHash", "Transfer", "fetch_object", "file_crc32c"]

logger = logging.getLogger(__package__ + ".gcs")  # one logger for every GCS download message

_CHUNK = 1 << 20


def _api_exceptions() -> Any:
    from google.api_core import exceptions

    return exceptions


def _hash_file(checksum: Any, path: Path) -> Any:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            checksum.update(chunk)
    return checksum


def _encode(checksum: Any) -> str:
    return base64.b64encode(checksum.digest()).decode("ascii")


def file_crc32c(path: str | Path) -> str:
    """CRC32C of a whole file, base64 of the big-endian digest (GCS style).

    Args:
        path: the file to hash.

    Returns:
        The checksum as GCS reports it in ``Blob.crc32c``.
    """
    import google_crc32c

    return _encode(_hash_file(google_crc32c.Checksum(), Path(path)))


class _SizeOnly:
    """Stands in for a hash when the listing gives none."""

    def update(self, data: bytes) -> None:
        pass

    def digest(self) -> bytes:
        return b""


@dataclass(frozen=True)
class ExpectedHash:
    """What a downloaded object is checked against: crc32c, else md5, else its size alone."""

    kind: str
    value: str | None

    @classmethod
    def of(cls, blob: Any) -> ExpectedHash:
        if blob.crc32c:
            return cls("crc32c", blob.crc32c)
        if blob.md5_hash:
            return cls("md5", blob.md5_hash)
        logger.warning("gs://%s/%s: the listing gives neither crc32c nor md5Hash; only its size "
                       "(%d bytes) is checked", blob.bucket.name, blob.name, blob.size)
        return cls("size", None)

    def new(self) -> Any:
        if self.kind == "crc32c":
            import google_crc32c

            return google_crc32c.Checksum()
        if self.kind == "md5":
            return hashlib.md5(usedforsecurity=False)
        return _SizeOnly()

    def matches(self, checksum: Any) -> bool:
        return self.value is None or _encode(checksum) == self.value

    def matches_file(self, path: Path, size: int) -> bool:
        if path.stat().st_size != size:
            return False
        return self.value is None or self.matches(_hash_file(self.new(), path))


class _HashingWriter:
    """Append-only file wrapper: hashes and counts exactly the bytes it writes.

    Stops the transfer (raises ``Cancelled``) once ``cancel`` is set.
    """

    def __init__(self, f: Any, checksum: Any, on_bytes: Callable[[int], None], cancel: threading.Event) -> None:
        self._f = f
        self._checksum = checksum
        self._on_bytes = on_bytes
        self._cancel = cancel
        self.last_data = time.monotonic()

    def write(self, data: bytes) -> int:
        if self._cancel.is_set():
            raise Cancelled("stopped: another download of this call failed")
        n = self._f.write(data)
        self._checksum.update(bytes(data))
        self._on_bytes(len(data))
        self.last_data = time.monotonic()
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


@dataclass
class Transfer:
    """Settings shared by the downloads of one call."""

    client: Any
    retries: int
    deadline: float
    on_bytes: Callable[[int], None]
    cancel: threading.Event


def _stream(blob: Any, f: Any, checksum: Any, part: Path, t: Transfer) -> None:
    """Appends the rest of ``blob`` to ``f``; the deadline restarts whenever data arrives.

    Each attempt asks for the bytes after those on disk, with timeouts that end
    within the time left before the deadline.
    """
    exc = _api_exceptions()
    writer = _HashingWriter(f, checksum, t.on_bytes, t.cancel)
    cause: BaseException | None = None
    timeouts = Budget(t.deadline).timeouts

    def attempt(timeouts: tuple[float, float]) -> None:
        blob.download_to_file(writer, client=t.client, start=f.tell() or None, raw_download=True,
                              checksum=None, timeout=timeouts, retry=None)

    while (left := t.deadline - (time.monotonic() - writer.last_data)) > 0:
        have = f.tell()
        try:
            Budget(left).call(attempt, t.cancel)
            return
        except exc.RetryError as err:
            cause = err.cause if err.cause is not None else err
        if f.tell() == have:
            break
        logger.info("gs://%s/%s: %s at byte %d; resuming", blob.bucket.name, blob.name,
                    describe_error(cause, timeouts), f.tell())
    why = "no answer" if cause is None else describe_error(cause, timeouts)
    raise DownloadStalledError(
        f"gs://{blob.bucket.name}/{blob.name}: no data from {endpoint_of(t.client)} for {t.deadline:g} s "
        f"({why}); {f.tell()} of {blob.size} bytes are kept in {part}; run the download again to "
        "resume from there"
    ) from None


def fetch_object(blob: Any, final: Path, t: Transfer) -> None:
    """Bring ``final`` to a verified copy of ``blob``; resume any ``.part``.

    The ``.part`` file is opened for appending only, so the checksum of the bytes
    already there plus the bytes written through the wrapper is the whole file's.
    """
    expected = ExpectedHash.of(blob)
    if final.exists():
        if expected.matches_file(final, blob.size):
            t.on_bytes(blob.size)
            logger.debug("%s is complete, skipping", final)
            return
        logger.warning("%s differs from gs://%s/%s; downloading again", final, blob.bucket.name, blob.name)
    part = final.with_name(final.name + ".part")
    final.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(t.retries + 1):
        have = part.stat().st_size if part.exists() else 0
        if have > blob.size:
            logger.warning("%s is larger than the object (%d > %d bytes); restarting", part, have, blob.size)
            part.unlink()
            have = 0
        checksum = _hash_file(expected.new(), part) if have else expected.new()
        t.on_bytes(have)
        with open(part, "ab") as f:
            if have < blob.size:
                if have:
                    logger.info("resuming %s from byte %d of %d", part, have, blob.size)
                _stream(blob, f, checksum, part, t)
            f.flush()
            os.fsync(f.fileno())
            got = f.tell()
        if got == blob.size and expected.matches(checksum):
            os.replace(part, final)
            return
        found = "" if expected.value is None else f", {expected.kind} {_encode(checksum)}"
        want = "" if expected.value is None else f", {expected.value}"
        logger.warning(
            "%s mismatch for %s (attempt %d of %d, %d bytes%s; expected %d bytes%s); "
            "downloading from scratch", expected.kind, part, attempt + 1, t.retries + 1, got, found,
            blob.size, want,
        )
        t.on_bytes(-got)
        part.unlink()
    raise ChecksumMismatchError(
        f"gs://{blob.bucket.name}/{blob.name} failed its {expected.kind} check {t.retries + 1} times "
        f"(expected {blob.size} bytes{'' if expected.value is None else ', ' + expected.value}); "
        "check the network or the mirror and retry"
    )
