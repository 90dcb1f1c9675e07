"""Objects under a dataset's remote prefix: list, fetch (verified, atomic) and put.

``GCSStore`` speaks to Google Cloud Storage through google-cloud-storage:
every read within a deadline, resumed by byte range, checked against the
object's crc32c before it gets its final name (:mod:`.gcs_fetch`).
``FsspecStore`` serves every other scheme (``s3://``, ``hf://``, ``file://``)
through ``fsspec`` when the backend of the scheme is installed; it checks
sizes, and the dataset's own checksums (:mod:`.dataset`) check content.
Both count the bytes they fetch (``bytes_fetched``) and the requests they make.
"""

from __future__ import annotations

import importlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .gcs_client import (
    anonymous_client,
    api_exceptions,
    bounded_request,
    list_blobs,
    storage_module,
)
from .gcs_errors import RemoteSourceError
from .gcs_fetch import Transfer, fetch_object, file_crc32c
from .urls import RemoteURL, parse_url

__all__ = ["DEFAULT_DEADLINE", "FsspecStore", "GCSStore", "ObjectInfo", "open_store"]

DEFAULT_DEADLINE = 120.0
_WAYS_OUT = "check the URL and STORAGE_EMULATOR_HOST, or retry when the server is back"


@dataclass(frozen=True)
class ObjectInfo:
    """One object under the prefix: its name relative to the prefix, size and crc32c (base64, or None)."""

    rel: str
    size: int
    crc32c: str | None = None
    handle: Any = None  # the listing's blob, when the store has one


class _Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bytes_fetched = 0
        self.requests = 0

    def add(self, n: int) -> None:
        with self.lock:
            self.bytes_fetched += n


class GCSStore(_Counter):
    """``gs://bucket/prefix`` through google-cloud-storage.

    Args:
        url: the dataset's URL.
        client: a storage client (default: anonymous for reading, the default
            credentials' client for writing, the emulator's when
            ``STORAGE_EMULATOR_HOST`` is set).
        write: the store will be written to.
        deadline: seconds a request may go without progress, retries included.
    """

    def __init__(self, url: RemoteURL, *, client: Any = None, write: bool = False,
                 deadline: float = DEFAULT_DEADLINE) -> None:
        super().__init__()
        self.url = url
        if client is None:
            client = anonymous_client() if not write or os.environ.get("STORAGE_EMULATOR_HOST") else \
                storage_module().Client()
        self.client = client
        self.bucket = client.bucket(url.bucket)
        self.deadline = deadline

    def list(self, rel_prefix: str = "") -> dict[str, ObjectInfo]:
        """The objects whose relative name starts with ``rel_prefix`` (an empty dict when none)."""
        with self.lock:
            self.requests += 1
        blobs = list_blobs(self.url.bucket, self.url.name(rel_prefix), client=self.client, deadline=self.deadline,
                           advice=f"expected a dataset pushed to {self.url.url} (`torchrl-ext push`)",
                           ways_out=_WAYS_OUT, allow_empty=True)
        out = {}
        for b in blobs:
            rel = b.name[len(self.url.prefix):]
            out[rel] = ObjectInfo(rel, int(b.size or 0), b.crc32c, b)
        return out

    def stat(self, rel: str) -> ObjectInfo | None:
        """One object's size and crc32c, or None when it does not exist; within the deadline, like a listing
        (an unreachable server fails at once, transient errors are retried until the deadline)."""
        with self.lock:
            self.requests += 1
        blob = bounded_request(lambda timeouts: self.bucket.get_blob(self.url.name(rel), timeout=timeouts, retry=None),
                               client=self.client, deadline=self.deadline, doing="reading", where=self.url.url + rel,
                               advice=_WAYS_OUT, ways_out=_WAYS_OUT)
        return None if blob is None else ObjectInfo(rel, int(blob.size or 0), blob.crc32c, blob)

    def fetch(self, info: ObjectInfo, dest: Path) -> None:
        """Brings ``dest`` to a verified copy of the object (a ``.part`` beside it is resumed)."""
        with self.lock:
            self.requests += 1
        blob = info.handle if info.handle is not None else self.bucket.blob(self.url.name(info.rel))
        t = Transfer(client=self.client, retries=2, deadline=self.deadline, on_bytes=lambda n: None,
                     cancel=threading.Event())
        exc = api_exceptions()
        before = dest.stat().st_size if dest.exists() else 0
        try:
            fetch_object(blob, dest, t)
        except (exc.NotFound, exc.Forbidden) as err:
            raise RemoteSourceError(
                f"{self.url.url}{info.rel}: object unreadable (HTTP {err.code}); the remote dataset changed "
                "or is incomplete; reopen it, or push it again"
            ) from None
        self.add(max(dest.stat().st_size - before, 0))

    def put(self, src: Path, rel: str) -> str:
        """Uploads ``src`` as ``rel`` and returns its crc32c; the server checks it on arrival."""
        with self.lock:
            self.requests += 1
        blob = self.bucket.blob(self.url.name(rel))
        crc = file_crc32c(src)
        blob.crc32c = crc
        blob.upload_from_filename(str(src), checksum="crc32c", timeout=(5.0, self.deadline))
        return crc


class FsspecStore(_Counter):
    """Any other scheme through ``fsspec`` (its backend for the scheme must be installed)."""

    def __init__(self, url: RemoteURL, **storage_options: Any) -> None:
        super().__init__()
        try:
            fsspec = importlib.import_module("fsspec")
        except ImportError as err:
            raise ImportError(f"{url.url}: {url.scheme}:// roots need fsspec; `pip install fsspec` "
                              "and the backend of the scheme") from err
        self.url = url
        self.fs = fsspec.filesystem(url.scheme, **storage_options)
        self.base = "/" + url.prefix if url.scheme == "file" else f"{url.bucket}/{url.prefix}"

    def list(self, rel_prefix: str = "") -> dict[str, ObjectInfo]:
        with self.lock:
            self.requests += 1
        found = self.fs.find(self.base + rel_prefix, detail=True) if self.fs.exists(self.base + rel_prefix) \
            else {}
        out = {}
        for path, d in found.items():
            rel = path[len(self.base.lstrip("/")):] if not path.startswith("/") else path[len(self.base):]
            rel = rel.lstrip("/")
            if rel.startswith(rel_prefix) and d.get("type", "file") == "file":
                out[rel] = ObjectInfo(rel, int(d.get("size") or 0))
        return out

    def stat(self, rel: str) -> ObjectInfo | None:
        with self.lock:
            self.requests += 1
        path = self.base + rel
        if not self.fs.exists(path):
            return None
        return ObjectInfo(rel, int(self.fs.info(path).get("size") or 0))

    def fetch(self, info: ObjectInfo, dest: Path) -> None:
        with self.lock:
            self.requests += 1
        part = dest.with_name(dest.name + ".part")
        self.fs.get_file(self.base + info.rel, str(part))
        got = part.stat().st_size
        if got != info.size:
            part.unlink()
            raise OSError(f"{self.url.url}{info.rel}: expected {info.size} bytes, received {got}; retry")
        os.replace(part, dest)
        self.add(got)

    def put(self, src: Path, rel: str) -> str:
        with self.lock:
            self.requests += 1
        target = self.base + rel
        self.fs.makedirs(target.rpartition("/")[0], exist_ok=True)
        self.fs.put_file(str(src), target)
        return file_crc32c(src)


def open_store(url: str | RemoteURL, *, write: bool = False, client: Any = None,
               deadline: float = DEFAULT_DEADLINE) -> GCSStore | FsspecStore:
    """The store of a remote root: ``gs://`` through google-cloud-storage, other schemes through fsspec."""
    parsed = url if isinstance(url, RemoteURL) else parse_url(url)
    if parsed.scheme == "gs":
        return GCSStore(parsed, client=client, write=write, deadline=deadline)
    return FsspecStore(parsed)
