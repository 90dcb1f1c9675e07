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
from .gcs_errors import ChecksumMismatchError, DownloadStalledError, RemoteSourceError, SourceUnreachableError
from .atari_dqn import (
    BucketReplayLogs,
    LocalReplayLogs,
    ReplayLogs,
    convert_atari_run,
    convert_atari_runs,
    convert_replay_logs,
    list_checkpoints,
    parse_run_id,
    resolve_replay_dir,
)
from .npy_stream import NpyGzReader, NpyHeader, copy_npy, load_npy_gz, open_gzip, read_npy_header

__all__ = [
    # Google Cloud Storage downloads
    "ATARI_BUCKET",
    "ATARI_PREFIX",
    "ChecksumMismatchError",
    "DownloadStalledError",
    "RemoteSourceError",
    "SourceUnreachableError",
    "anonymous_client",
    "atari_run_prefix",
    "download_atari_run",
    "download_prefix",
    "file_crc32c",
    "list_atari_checkpoints",
    "list_objects",
    # Atari DQN replay logs
    "BucketReplayLogs",
    "LocalReplayLogs",
    "ReplayLogs",
    "convert_atari_run",
    "convert_atari_runs",
    "convert_replay_logs",
    "list_checkpoints",
    "parse_run_id",
    "resolve_replay_dir",
    # npy inside gzip, streamed
    "NpyGzReader",
    "NpyHeader",
    "copy_npy",
    "load_npy_gz",
    "open_gzip",
    "read_npy_header",
]
