"""What an exporter reads: the dataset's storage and the episode ids a source selects."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["episodes_of"]


def episodes_of(source: Any) -> tuple[Any, np.ndarray]:
    """``(storage, episode ids)`` of a dataset path, a ``ShardedStorage`` (all) or an ``EpisodeView`` (its own).

    A path may be a URL (``gs://bucket/prefix``): the string reaches ``ShardedStorage`` as it is, which reads
    the dataset through the local cache.
    """
    from ..storages import EpisodeView, ShardedStorage

    if isinstance(source, EpisodeView):
        return source.base, source.episode_ids
    if isinstance(source, (str, os.PathLike)):
        source = ShardedStorage(source)
    if isinstance(source, ShardedStorage):
        return source, np.arange(source.num_episodes, dtype=np.int64)
    raise TypeError(f"`source` must be a dataset path or URL, a ShardedStorage or an EpisodeView, got "
                    f"{type(source).__name__}")
