"""TorchRL's ``preprocess`` entry point for replay buffers backed by a ``ShardedStorage``."""

from __future__ import annotations

import os
from typing import Any, Callable

from ..storages import ShardedStorage
from .run import preprocess

__all__ = ["preprocess_buffer"]


def preprocess_buffer(
    rb: Any,
    fn: Callable[[Any], Any],
    dim: int = 0,
    num_workers: int | None = None,
    *,
    dest: str | os.PathLike,
    chunksize: int | None = None,
    worker_threads: int = 1,
    pbar: bool = False,
    mp_start_method: str | None = None,
    num_frames: int | None = None,
    swap: bool = False,
    **kwargs: Any,
) -> ShardedStorage:
    """``BaseDatasetExperienceReplay.preprocess`` for a buffer over a :class:`ShardedStorage`.

    Same arguments as TorchRL's method (``chunksize`` becomes ``batch_rows``;
    ``num_frames`` keeps whole episodes only); further keywords go to
    :func:`torchrl_ext.preprocess`. Like TorchRL it returns the new storage.
    With ``swap=True`` the buffer also reads from it from now on
    (``rb.set_storage``); samplers stay valid because rows, episodes and events
    keep their positions.
    """
    if dim != 0:
        raise ValueError(f"`dim` must be 0 (rows are mapped along the first dimension), got {dim!r}")
    storage = rb.storage
    if not isinstance(storage, ShardedStorage):
        raise TypeError(
            f"preprocess needs a buffer over a torchrl_ext.ShardedStorage, found "
            f"{type(storage).__name__}; use TorchRL's own preprocess for other storages"
        )
    kwargs.setdefault("batch_rows", chunksize)
    new = preprocess(storage, fn, dest, num_workers=num_workers, num_rows=num_frames,
                     mp_start_method=mp_start_method, worker_threads=worker_threads, pbar=pbar, **kwargs)
    if swap:
        rb.set_storage(new)
        new.attach(rb)
        rb.set_writer(rb.writer)
    return new
