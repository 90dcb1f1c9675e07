"""Where a run's replay-log files are read from: a local directory or a bucket, as byte streams.

A :class:`ReplayLogs` names the checkpoints it holds and opens any of its
files as a binary stream of the ``.gz`` bytes; the converter decompresses the
stream as it arrives. :class:`LocalReplayLogs` reads a ``replay_logs``
directory. :class:`BucketReplayLogs` streams objects from Google Cloud
Storage (anonymous client, ``STORAGE_EMULATOR_HOST`` honoured): a background
thread fetches each object in ranged requests a few chunks ahead of the
reader, so the download overlaps with decompression and writing, nothing is
stored on disk, and the object's crc32c is checked when its last byte has
been read (:class:`~torchrl_ext.sources.ChecksumMismatchError` otherwise).
"""

from __future__ import annotations

import io
import os
import queue
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ...format import FormatError
from ...sources.gcs import (
    DEFAULT_DEADLINE,
    anonymous_client,
    list_objects,
)
from ...remote.gcs_errors import (
    ChecksumMismatchError,
    DownloadStalledError,
    RemoteSourceError,
)
from ...remote.gcs_fetch import ExpectedHash
from ...remote.gcs_retry import Budget, check_deadline, describe_error, endpoint_of
from ...validation import user_path
from .bucket import ATARI_BUCKET, ATARI_PREFIX, atari_run_prefix

__all__ = ["BucketReplayLogs", "LocalReplayLogs", "ReplayLogs", "column_file", "list_checkpoints"]

STORE_COLUMNS = ("observation", "action", "reward", "terminal")
EXTRA_FILES = ("add_count", "invalid_range")
_PATTERN = re.compile(r"^\$store\$_observation_ckpt\.([0-9]+)\.gz$")
MAX_CHECKPOINT = 1_000_000  # the published runs have checkpoints 0 .. 50
_STREAM_CHUNK = 8 << 20
_PREFETCH = 4


def column_file(column: str, index: int) -> str:
    """File name of one column of checkpoint ``index``: ``$store$_observation_ckpt.3.gz``, ``add_count_ckpt.3.gz``."""
    prefix = "$store$_" if column in STORE_COLUMNS else ""
    return f"{prefix}{column}_ckpt.{index}.gz"


def _indices(names: list[str], describe: Callable[[str], str]) -> list[int]:
    """Checkpoint indices of the observation files among ``names``, sorted; refuses numbers no run writes."""
    out = []
    for name in names:
        m = _PATTERN.match(name)
        if m is None:
            continue
        text = m.group(1)
        if len(text) > len(str(MAX_CHECKPOINT)) or int(text) > MAX_CHECKPOINT or text != str(int(text)):
            raise FormatError(
                f"{describe(name)}: checkpoint number {text}, expected 0..{MAX_CHECKPOINT} without leading "
                "zeros (as Dopamine names them); remove or rename the file"
            )
        out.append(int(text))
    return sorted(out)


def checkpoint_files(index: int) -> list[str]:
    """Every file a checkpoint consists of."""
    return [column_file(c, index) for c in (*STORE_COLUMNS, *EXTRA_FILES)]


class ReplayLogs:
    """The files of one run's ``replay_logs``, opened as streams of their compressed bytes."""

    #: how messages name this source (a directory or a ``gs://`` URL)
    where: str = ""

    def checkpoints(self) -> list[int]:
        """Checkpoint indices present (those with an observation file), sorted."""
        raise NotImplementedError

    def open(self, name: str) -> IO[bytes]:
        """Opens file ``name`` (e.g. ``add_count_ckpt.0.gz``) as a binary stream."""
        raise NotImplementedError

    def describe(self, name: str) -> str:
        """How errors name file ``name``."""
        return f"{self.where.rstrip('/')}/{name}"

    def size(self, name: str) -> int | None:
        """Size in bytes of file ``name`` as its listing gives it, ``None`` when unknown."""
        return None


def _replay_dir(src_dir: Path) -> Path:
    return src_dir / "replay_logs" if (src_dir / "replay_logs").is_dir() else src_dir


def list_checkpoints(src_dir: str | os.PathLike) -> list[int]:
    """Checkpoint indices found in a ``replay_logs`` directory (or its parent), sorted."""
    return LocalReplayLogs(src_dir).checkpoints()


class LocalReplayLogs(ReplayLogs):
    """A ``replay_logs`` directory (or the run directory holding one).

    Example:
        >>> import tempfile
        >>> LocalReplayLogs(tempfile.mkdtemp()).checkpoints()
        []
    """

    def __init__(self, src_dir: str | os.PathLike) -> None:
        self.dir = _replay_dir(user_path(src_dir, "src_dir"))
        if not self.dir.is_dir():
            raise FileNotFoundError(f"{self.dir}: replay-log directory not found; expected <run>/replay_logs")
        self.where = str(self.dir)

    def checkpoints(self) -> list[int]:
        return _indices([p.name for p in self.dir.iterdir()], self.describe)

    def open(self, name: str) -> IO[bytes]:
        path = self.dir / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: replay-log file is missing; download the checkpoint again")
        return open(path, "rb")

    def describe(self, name: str) -> str:
        return str(self.dir / name)


class BucketReplayLogs(ReplayLogs):
    """One run's ``replay_logs`` objects in a bucket, streamed without touching the disk.

    Args:
        bucket: bucket name (a mirror's, for example).
        prefix: object prefix of the files, ending in ``/``.
        client: a storage client; an anonymous one by default.
        chunk_bytes: size of each ranged request.
        prefetch: chunks fetched ahead of the reader (memory: ``chunk_bytes * prefetch``
            per open stream).
        deadline: seconds a stream may go without receiving data (transient errors
            are retried until then), as for the downloads.

    Raises:
        RemoteSourceError: the bucket or prefix is missing, forbidden or empty.
    """

    def __init__(self, bucket: str, prefix: str, *, client: Any = None, chunk_bytes: int = _STREAM_CHUNK,
                 prefetch: int = _PREFETCH, deadline: float = DEFAULT_DEADLINE) -> None:
        if not isinstance(chunk_bytes, int) or chunk_bytes <= 0:
            raise ValueError(f"`chunk_bytes` must be a positive int, got {chunk_bytes!r}")
        if not isinstance(prefetch, int) or prefetch <= 0:
            raise ValueError(f"`prefetch` must be a positive int, got {prefetch!r}")
        self.bucket, self.prefix = bucket, prefix
        self.client = anonymous_client() if client is None else client
        self.chunk_bytes, self.prefetch = chunk_bytes, prefetch
        self.deadline = check_deadline(deadline)
        self.where = f"gs://{bucket}/{prefix}"
        blobs = list_objects(bucket, prefix, client=self.client, deadline=self.deadline)
        self._blobs = {b.name[len(prefix):]: b for b in blobs if "/" not in b.name[len(prefix):]}

    @classmethod
    def for_run(cls, game: str, run: int, *, bucket: str = ATARI_BUCKET, prefix: str = ATARI_PREFIX,
                client: Any = None, deadline: float = DEFAULT_DEADLINE) -> BucketReplayLogs:
        """The run ``game``/``run`` of the Atari DQN Replay Dataset (``<prefix>/<game>/<run>/replay_logs/``)."""
        return cls(bucket, atari_run_prefix(game, run, prefix), client=client, deadline=deadline)

    def checkpoints(self) -> list[int]:
        return _indices(list(self._blobs), self.describe)

    def size(self, name: str) -> int | None:
        blob = self._blobs.get(name)
        return None if blob is None or blob.size is None else int(blob.size)

    def open(self, name: str) -> IO[bytes]:
        blob = self._blobs.get(name)
        if blob is None:
            raise RemoteSourceError(
                f"{self.describe(name)}: object not found; expected every file of the checkpoint. "
                "Point at a complete mirror with `bucket=`/`prefix=`, or convert from local files (`local_dir=`)"
            )
        return io.BufferedReader(BlobStream(blob, self.client, self.chunk_bytes, self.prefetch,
                                            self.describe(name), self.deadline), buffer_size=1 << 20)


_END = object()


class BlobStream(io.RawIOBase):
    """A read-only stream of one object, fetched in ranged requests by a background thread.

    The thread keeps at most ``prefetch`` chunks queued. Each request retries
    transient errors for up to ``deadline`` seconds. The crc32c of the bytes (or
    md5, or the size alone when the listing gives neither) is compared with the
    object's when the last chunk has arrived; a mismatch is raised by the read
    that reaches the end.
    """

    def __init__(self, blob: Any, client: Any, chunk_bytes: int, prefetch: int, name: str,
                 deadline: float = DEFAULT_DEADLINE) -> None:
        super().__init__()
        self.label = name
        self._deadline = deadline
        self._blob, self._client, self._chunk = blob, client, chunk_bytes
        self._queue: queue.Queue = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._buf = memoryview(b"")
        self._done = False
        self._thread = threading.Thread(target=self._fetch, name=f"fetch {name}", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _range(self, start: int, end: int) -> bytes:
        """Bytes ``start..end`` of the object, transient errors retried for the deadline; one-line errors."""
        from google.api_core import exceptions

        budget = Budget(self._deadline)
        try:
            return budget.call(lambda timeouts: self._blob.download_as_bytes(
                client=self._client, start=start, end=end, raw_download=True, checksum=None, retry=None,
                timeout=timeouts), self._stop)
        except exceptions.RetryError as err:
            why = describe_error(err.cause if err.cause is not None else err, budget.timeouts)
            raise DownloadStalledError(
                f"{self.label}: no data from {endpoint_of(self._client)} for {self._deadline:g} s at byte "
                f"{start} ({why}); run the conversion again to resume after the episodes it committed"
            ) from None
        except (exceptions.NotFound, exceptions.Forbidden) as err:
            raise RemoteSourceError(
                f"{self.label}: object unreadable (HTTP {err.code}); expected the object of the listing. "
                "Point at a complete mirror with `bucket=`/`prefix=`, or convert from local files (`local_dir=`)"
            ) from None

    def _fetch(self) -> None:
        try:
            expected = ExpectedHash.of(self._blob)
            checksum = expected.new()
            size = int(self._blob.size or 0)
            for start in range(0, size, self._chunk):
                end = min(start + self._chunk, size) - 1
                data = self._range(start, end)
                if len(data) != end - start + 1:
                    raise RemoteSourceError(
                        f"{self.label}: asked for bytes {start}-{end}, got {len(data)} bytes; "
                        "the object changed or the server is broken, retry later"
                    )
                checksum.update(data)
                if not self._put(data):
                    return
            if not expected.matches(checksum):
                raise ChecksumMismatchError(
                    f"{self.label}: {expected.kind} of the streamed bytes does not match the object's "
                    f"{expected.value}; retry the conversion (it resumes) or check the mirror"
                )
            self._put(_END)
        except BaseException as err:  # noqa: BLE001 - handed to the reader, raised there
            self._put(err)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._done:
            return 0
        while not len(self._buf):
            item = self._queue.get()
            if item is _END:
                self._done = True
                return 0
            if isinstance(item, BaseException):
                self._done = True
                raise item
            self._buf = memoryview(item)
        view = memoryview(b).cast("B")
        n = min(len(view), len(self._buf))
        view[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self._stop.set()
            while self._thread.is_alive():
                try:
                    self._queue.get(timeout=0.05)
                except queue.Empty:
                    pass
            self._buf = memoryview(b"")
        super().close()
