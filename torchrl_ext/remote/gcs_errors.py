"""Errors raised while fetching files from Google Cloud Storage.

Every message is one line naming what was tried (host, bucket, object), what
happened, and the way out.
"""

from __future__ import annotations

__all__ = ["ChecksumMismatchError", "DownloadStalledError", "RemoteSourceError", "SourceUnreachableError"]


class RemoteSourceError(FileNotFoundError):
    """A bucket or prefix could not be read: missing, forbidden or empty.

    The message names the bucket and prefix that were tried and how to point
    at a mirror (``bucket=``/``prefix=``) or convert from local files instead.
    """


class SourceUnreachableError(RemoteSourceError):
    """The storage server could not be reached at all: name resolution failed,
    the connection was refused or timed out.

    Raised at the first request, without retrying. The message names the
    endpoint tried and the two ways out: a reachable mirror (``bucket=`` or
    ``STORAGE_EMULATOR_HOST``) or files already on disk (``local_dir=``).
    """


class DownloadStalledError(OSError):
    """A reachable server stopped making progress for longer than the deadline.

    Connection resets, refused reconnects, read timeouts and server errors were
    retried until ``deadline`` seconds passed without a byte arriving. The
    message names the object and the last cause; the partial ``.part`` files
    are kept, so running the download again resumes them.
    """


class ChecksumMismatchError(OSError):
    """A downloaded file kept failing its checksum check after every retry."""
