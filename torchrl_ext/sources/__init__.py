"""Generic sources: public buckets fetched without gsutil, and restricted readers for untrusted files.

Format-specific importers live in :mod:`torchrl_ext.interop` (one folder per project).
"""

from ..moved_paths import moved_names
from .gcs import anonymous_client, download_prefix, file_crc32c, list_objects
from ..remote.gcs_errors import (
    ChecksumMismatchError,
    DownloadStalledError,
    RemoteSourceError,
    SourceUnreachableError,
)
from .npy_header import NpyHeader, read_npy_header
from .npy_stream import NpyGzReader, copy_npy, load_npy_gz, open_gzip

__all__ = [
    # Google Cloud Storage downloads
    "ChecksumMismatchError",
    "DownloadStalledError",
    "RemoteSourceError",
    "SourceUnreachableError",
    "anonymous_client",
    "download_prefix",
    "file_crc32c",
    "list_objects",
    # npy inside gzip, streamed
    "NpyGzReader",
    "NpyHeader",
    "copy_npy",
    "load_npy_gz",
    "open_gzip",
    "read_npy_header",
]

# moved to torchrl_ext.interop.atari_dqn (old names still resolve, with a warning)
__getattr__ = moved_names(__name__, dict.fromkeys(
    ("ATARI_BUCKET", "ATARI_PREFIX", "atari_run_prefix", "download_atari_run", "list_atari_checkpoints",
     "BucketReplayLogs", "LocalReplayLogs", "ReplayLogs", "convert_atari_run", "convert_atari_runs",
     "convert_replay_logs", "list_checkpoints", "parse_run_id", "resolve_replay_dir"),
    "torchrl_ext.interop.atari_dqn"))
