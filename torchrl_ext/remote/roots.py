"""Dataset roots as every API takes them: a local path, or a URL opened through the cache."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..validation import user_path
from .urls import is_remote

__all__ = ["dataset_root"]


def dataset_root(value: Any, name: str = "root", *, cache_dir: str | os.PathLike | None = None,
                 disk_cache_bytes: int | None = None, client: Any = None) -> Path:
    """The local directory of a dataset root.

    A local path comes back as a ``Path`` (``~`` expanded). A URL
    (``gs://bucket/prefix``, or a scheme fsspec serves) is opened through the
    local cache (:class:`~.dataset.RemoteDataset`: its metadata fetched and
    verified, no shard yet) and its cache root comes back: every reader given
    that directory fetches shards on first touch.
    """
    if is_remote(value):
        from .dataset import RemoteDataset

        return RemoteDataset.open(value, cache_dir=cache_dir, disk_cache_bytes=disk_cache_bytes, client=client).root
    return user_path(value, name)
