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
from .atari_dqn import convert_replay_logs, decompress_checkpoint, list_checkpoints
from .npy_stream import NpyHeader, copy_npy, load_npy_gz, open_gzip, read_npy_header

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
    # Atari DQN replay logs
    "convert_replay_logs",
    "decompress_checkpoint",
    "list_checkpoints",
    # npy inside gzip, streamed
    "NpyHeader",
    "copy_npy",
    "load_npy_gz",
    "open_gzip",
    "read_npy_header",
]
