"""Datasets in a bucket, and the Google Cloud Storage transport of the package.

``gs://bucket/prefix`` goes through google-cloud-storage (anonymous reads,
retries within a deadline, every object checked against its crc32c); other
schemes through ``fsspec`` when its backend is installed.
"""

from .dataset import RemoteDataset
from .gcs_client import anonymous_client
from .gcs_errors import (
    ChecksumMismatchError,
    DownloadStalledError,
    RemoteSourceError,
    SourceUnreachableError,
)
from .push import PushResult, push
from .roots import dataset_root
from .urls import RemoteURL, is_remote, parse_url

__all__ = [
    # datasets in a bucket
    "PushResult",
    "RemoteDataset",
    "RemoteURL",
    "dataset_root",
    "is_remote",
    "parse_url",
    "push",
    # the transport's errors
    "ChecksumMismatchError",
    "DownloadStalledError",
    "RemoteSourceError",
    "SourceUnreachableError",
    "anonymous_client",
]
