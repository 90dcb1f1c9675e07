"""Errors raised while fetching files from Google Cloud Storage."""

from __future__ import annotations

__all__ = ["ChecksumMismatchError", "RemoteSourceError"]


class RemoteSourceError(FileNotFoundError):
    """A bucket or prefix could not be read: missing, forbidden or empty.

    The message names the bucket and prefix that were tried and how to point
    at a mirror (``bucket=``/``prefix=``) or convert from local files instead.
    """


class ChecksumMismatchError(OSError):
    """A downloaded file kept failing its crc32c check after every retry."""
