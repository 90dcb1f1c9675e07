"""Datasets in a bucket, and the Google Cloud Storage transport of the package.

``gs://bucket/prefix`` goes through google-cloud-storage (anonymous reads,
retries within a deadline, every object checked against its crc32c); other
schemes through ``fsspec`` when its backend is installed. Names load on first
use, so ``torchrl_ext.remote.urls`` (what the CLI needs to parse a URL)
imports neither numpy nor the cloud client.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the module that defines it
_NAMES: dict[str, str] = {
    # datasets in a bucket
    "PushResult": ".publish",
    "RemoteDataset": ".dataset",
    "RemoteURL": ".urls",
    "dataset_root": ".roots",
    "is_remote": ".urls",
    "parse_url": ".urls",
    "push": ".publish",
    # the transport and its errors
    "ChecksumMismatchError": ".gcs_errors",
    "DownloadStalledError": ".gcs_errors",
    "RemoteSourceError": ".gcs_errors",
    "SourceUnreachableError": ".gcs_errors",
    "anonymous_client": ".gcs_client",
}

__all__ = list(_NAMES)


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES))
