"""The Atari DQN Replay Dataset's bucket: run prefixes, checkpoint listing, whole-run downloads.

Google publishes the logs at ``gs://atari-replay-datasets/dqn/<Game>/<run>/replay_logs/``
(one object per array and checkpoint, ``$store$_observation_ckpt.<i>.gz``...).
Everything goes through :mod:`torchrl_ext.sources.gcs` (anonymous client,
retries, deadlines, crc32c checks); a mirror is another ``bucket``/``prefix``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ...sources.gcs import (
    DEFAULT_DEADLINE,
    anonymous_client,
    download_prefix,
    list_objects,
    location,
)
from ...remote.gcs_retry import check_deadline

__all__ = ["ATARI_BUCKET", "ATARI_PREFIX", "atari_run_prefix", "download_atari_run", "list_atari_checkpoints"]

ATARI_BUCKET = "atari-replay-datasets"
ATARI_PREFIX = "dqn"
_CKPT_RE = re.compile(r"^(?P<kind>.+)_ckpt\.(?P<index>[0-9]{1,9})\.gz$")  # the published runs have 0..50


def atari_run_prefix(game: str, run: int, prefix: str = ATARI_PREFIX) -> str:
    """Object prefix of one Atari DQN replay run, e.g. ``dqn/Pong/1/replay_logs/``."""
    if not isinstance(game, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", game):
        raise ValueError(f"`game` must be a game name like 'Pong', got {game!r}")
    if isinstance(run, bool) or not isinstance(run, int) or run < 1:
        raise ValueError(f"`run` must be a positive int (1-5 in the public dataset), got {run!r}")
    return f"{prefix.strip('/')}/{game}/{run}/replay_logs/"


def _checkpoint_of(name: str) -> int | None:
    match = _CKPT_RE.match(name.rsplit("/", 1)[-1])
    return int(match["index"]) if match else None


def list_atari_checkpoints(
    game: str, run: int, *, bucket: str = ATARI_BUCKET, prefix: str = ATARI_PREFIX, client: Any = None,
    deadline: float = DEFAULT_DEADLINE,
) -> list[int]:
    """Checkpoint indices available for one Atari DQN replay run, sorted.

    Args:
        game: game name as in the bucket, e.g. ``"Pong"``.
        run: run number (1-5).
        bucket: bucket to read (a mirror's name to use a mirror).
        prefix: top-level prefix inside the bucket.
        client: a storage client; an anonymous one by default.
        deadline: seconds transient listing errors are retried for.

    Returns:
        Sorted checkpoint indices found in object names ``*_ckpt.<i>.gz``.

    Raises:
        SourceUnreachableError: the server cannot be reached.
        RemoteSourceError: the run is missing, forbidden or empty.
    """
    run_prefix = atari_run_prefix(game, run, prefix)
    blobs = list_objects(bucket, run_prefix, client=client, deadline=deadline)
    return sorted({c for c in map(_checkpoint_of, (b.name for b in blobs)) if c is not None})


def download_atari_run(
    game: str,
    run: int,
    dest: str | Path,
    *,
    bucket: str = ATARI_BUCKET,
    prefix: str = ATARI_PREFIX,
    checkpoints: Iterable[int] | None = None,
    threads: int = 8,
    client: Any = None,
    progress: bool = True,
    retries: int = 2,
    deadline: float = DEFAULT_DEADLINE,
) -> list[Path]:
    """Download one run of the Atari DQN Replay Dataset's ``replay_logs``.

    Files land directly in ``dest`` (``dest/$store$_observation_ckpt.0.gz``, ...).

    Args:
        game: game name as in the bucket, e.g. ``"Pong"``.
        run: run number (1-5).
        dest: destination directory, the local ``replay_logs`` directory.
        bucket: bucket to read (a mirror's name to use a mirror).
        prefix: top-level prefix inside the bucket.
        checkpoints: only these checkpoint indices (all files by default).
        threads: number of parallel downloads.
        client: a storage client; an anonymous one by default.
        progress: show a progress bar in bytes.
        retries: fresh downloads allowed after a checksum mismatch, per file.
        deadline: seconds an object may go without data (see :func:`download_prefix`).

    Returns:
        The local paths, in object-name order.

    Raises:
        SourceUnreachableError: the server cannot be reached.
        RemoteSourceError: the run is missing, forbidden or empty.
        DownloadStalledError: a file got no data for ``deadline`` seconds (``.part`` kept).
        ValueError: a requested checkpoint does not exist, or a hostile object name.
    """
    run_prefix = atari_run_prefix(game, run, prefix)
    deadline = check_deadline(deadline)
    client = anonymous_client() if client is None else client
    blobs = list_objects(bucket, run_prefix, client=client, deadline=deadline)
    if checkpoints is not None:
        wanted = set()
        for c in checkpoints:
            if isinstance(c, bool) or not isinstance(c, int) or c < 0:
                raise ValueError(f"`checkpoints` must hold non-negative ints, got {c!r}")
            wanted.add(c)
        available = {_checkpoint_of(b.name) for b in blobs} - {None}
        missing = sorted(wanted - available)
        if missing:
            raise ValueError(
                f"checkpoints {missing} not found at {location(bucket, run_prefix)}; "
                f"available: {sorted(available)}"
            )
        blobs = [b for b in blobs if _checkpoint_of(b.name) in wanted]
    return download_prefix(
        bucket, run_prefix, dest, threads=threads, client=client,
        progress=progress, retries=retries, blobs=blobs, deadline=deadline,
    )
