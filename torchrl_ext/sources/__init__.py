"""Episode sources: where raw data comes from before it reaches the writer."""

from .gcs import (
    ATARI_BUCKET,
    ATARI_PREFIX,
    anonymous_client,
    atari_run_prefix,
    download_atari_run,
    download_prefix,
    file_crc32c,
    list_atari_checkpoints,
    list_objects,
)
from .gcs_errors import ChecksumMismatchError, RemoteSourceError

__all__ = [
    # Google Cloud Storage downloads
    "ATARI_BUCKET",
    "ATARI_PREFIX",
    "ChecksumMismatchError",
    "RemoteSourceError",
    "anonymous_client",
    "atari_run_prefix",
    "download_atari_run",
    "download_prefix",
    "file_crc32c",
    "list_atari_checkpoints",
    "list_objects",
]
