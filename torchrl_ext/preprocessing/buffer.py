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
    num_chunks: int | None = None,
    pool: Any = None,
    generator: Any = None,
    max_tasks_per_child: int | None = None,
    index_with_generator: bool = False,
    worker_threads: int = 1,
    pbar: bool = False,
    mp_start_method: str | None = None,
    num_frames: int | None = None,
    swap: bool = False,
    **kwargs: Any,
) -> ShardedStorage:
    """``BaseDatasetExperienceReplay.preprocess`` for a buffer over a :class:`ShardedStorage`.

    Same signature as TorchRL's method: ``chunksize`` becomes ``batch_rows``,
    ``num_frames`` keeps whole episodes only, and the ``tensordict.map`` options
    ``num_chunks``, ``pool``, ``generator``, ``max_tasks_per_child`` and
    ``index_with_generator`` are refused when set; further keywords
    (``batch_rows``, ``overwrite``, ``next_from_row``, ``executor``) go to
    :func:`torchrl_ext.preprocess`. Like TorchRL it returns the new storage.
    With ``swap=True`` the buffer also reads from it from now on
    (``rb.set_storage``), through a storage of the same kind and settings
    (:meth:`ShardedStorage.at`: frame stacks and layout kept); samplers stay
    valid because rows, episodes and events keep their positions.
    """
    unsupported = {"num_chunks": num_chunks, "pool": pool, "generator": generator,
                   "max_tasks_per_child": max_tasks_per_child,
                   "index_with_generator": index_with_generator or None}
    given = sorted(k for k, v in unsupported.items() if v is not None)
    if given:
        raise ValueError(
            f"{given} are TorchRL map options that do not apply here (one task per shard, rows in "
            "order); drop them, use `num_workers` and `chunksize` (rows per fn call)"
        )
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
    if swap:  # the buffer keeps sampling the same way (frame stacks, layout) from the new dataset
        new = storage.at(new.root)
        rb.set_storage(new)
        new.attach(rb)
        rb.set_writer(rb.writer)
    return new
