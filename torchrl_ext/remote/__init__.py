"""Datasets in a bucket, and the Google Cloud Storage transport of the package.

``gs://bucket/prefix`` goes through google-cloud-storage (anonymous reads,
retries within a deadline, every object checked against its crc32c); other
schemes through ``fsspec`` when its backend is installed.
"""

from .gcs_client import anonymous_client
from .gcs_errors import (
    ChecksumMismatchError,
    DownloadStalledError,
    RemoteSourceError,
    SourceUnreachableError,
)

__all__ = [
    "ChecksumMismatchError",
    "DownloadStalledError",
    "RemoteSourceError",
    "SourceUnreachableError",
    "anonymous_client",
]
