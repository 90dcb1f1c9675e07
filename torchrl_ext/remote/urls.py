"""Dataset roots that name a bucket: ``gs://bucket/prefix`` and the other ``fsspec`` schemes.

A root is remote when it is a string with a scheme (``gs://``, ``s3://``,
``hf://``, ``file://``...); anything else is a local path. ``gs://`` goes
through google-cloud-storage; other schemes through ``fsspec`` when its
backend for the scheme is installed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["RemoteURL", "is_remote", "parse_url"]

_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*)://", re.IGNORECASE)
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


def is_remote(root: Any) -> bool:
    """True for a string root with a URL scheme (``gs://b/p``), False for a local path."""
    if isinstance(root, os.PathLike):
        return False
    return isinstance(root, str) and _SCHEME.match(root) is not None


@dataclass(frozen=True)
class RemoteURL:
    """A parsed remote root.

    Attributes:
        scheme: ``"gs"``, ``"s3"``, ``"file"``...
        bucket: the bucket (empty for ``file://``).
        prefix: the dataset's object name prefix, ending in ``/`` (or empty for a bucket's top).
    """

    scheme: str
    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.prefix}"

    def name(self, rel: str) -> str:
        """The object name of ``rel`` (a path inside the dataset)."""
        return self.prefix + rel


def parse_url(url: str, name: str = "root") -> RemoteURL:
    """Splits ``scheme://bucket/prefix``; the prefix is normalised to end in ``/``.

    Raises:
        ValueError: no scheme, no bucket, or a prefix with ``.``/``..``/empty parts.

    Example:
        >>> parse_url("gs://my-bucket/atari/Pong/1")
        RemoteURL(scheme='gs', bucket='my-bucket', prefix='atari/Pong/1/')
    """
    m = _SCHEME.match(url) if isinstance(url, str) else None
    if m is None:
        raise ValueError(f"`{name}` must be a URL like gs://bucket/prefix, got {url!r}")
    scheme = m.group(1).lower()
    rest = url[m.end():]
    if scheme == "file":
        path = os.path.abspath(rest)
        return RemoteURL("file", "", path.strip("/") + "/")
    bucket, _, prefix = rest.partition("/")
    parts = [p for p in prefix.split("/")]
    if parts and parts[-1] == "":
        parts = parts[:-1]
    bad = any(p in ("", ".", "..") for p in parts) or "\\" in prefix or "\x00" in prefix
    if not bucket or (scheme == "gs" and not _BUCKET.match(bucket)) or bad:
        raise ValueError(
            f"`{name}` must be {scheme}://bucket/prefix with a valid bucket name and plain prefix parts "
            f"(no empty, '.' or '..' parts), got {url!r}"
        )
    return RemoteURL(scheme, bucket, "/".join(parts) + "/" if parts else "")
