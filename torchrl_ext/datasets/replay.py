"""``ShardedExperienceReplay``: any sharded dataset as a ready TorchRL dataset buffer.

What ``torchrl.data.datasets.load_dataset("torchrl_ext:<root>")`` returns (the
prefix is registered by :mod:`torchrl_ext.torchrl_registry`): a
``BaseDatasetExperienceReplay`` over a :class:`~torchrl_ext.ShardedStorage`
(or an :class:`~torchrl_ext.storages.EpisodeView` of it with ``where=``),
read-only, with TorchRL's sampler options, ``data_path`` and ``preprocess``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torchrl.data.datasets.common import BaseDatasetExperienceReplay
from torchrl.data.replay_buffers import (
    ImmutableDatasetWriter,
    SamplerWithoutReplacement,
)

from ..compat.torchrl_buffers import ConcurrentReads
from ..format import MANIFEST_NAME
from ..preprocessing import preprocess_buffer
from ..storages import EpisodeView, ShardedStorage
from .slice_samplers import NarrowSliceSampler, NarrowSliceSamplerWithoutReplacement

__all__ = ["ShardedExperienceReplay", "episode_sampler"]


def episode_sampler(storage: Any, *, num_slices: int | None = None, slice_len: int | None = None,
                    strict_len: bool = True, replacement: bool = True) -> Any:
    """TorchRL's sampler for these options, given the episode of every row (never scanning for ends).

    A ``SliceSampler`` (``SliceSamplerWithoutReplacement`` without
    replacement) over ``storage.episodes`` when ``num_slices`` or
    ``slice_len`` is set, reading from the storage only the flags it uses
    (:class:`~torchrl_ext.datasets.slice_samplers.NarrowSliceSampler`);
    ``SamplerWithoutReplacement`` without replacement; otherwise ``None``
    (the buffer's uniform ``RandomSampler``).
    """
    if num_slices is not None or slice_len is not None:
        cls = NarrowSliceSampler if replacement else NarrowSliceSamplerWithoutReplacement
        extra = {"cache_values": True} if replacement else {}
        return cls(num_slices=num_slices, slice_len=slice_len, strict_length=strict_len,
                   trajectories=storage.episodes, **extra)
    return None if replacement else SamplerWithoutReplacement()


class ShardedExperienceReplay(ConcurrentReads, BaseDatasetExperienceReplay):
    """A sharded dataset as a TorchRL dataset replay buffer (read-only).

    Args:
        dataset_id: the dataset directory (``~`` is expanded).
        batch_size: default sample size.

    Keyword Args:
        where, params: sample only the episodes matching this SQL filter over
            the episode table (an :class:`~torchrl_ext.storages.EpisodeView`).
        sampler, writer, transform: as in ``TensorDictReplayBuffer``; the
            writer defaults to ``ImmutableDatasetWriter``.
        num_slices, slice_len, strict_len, replacement: build a slice sampler
            over episodes when no sampler is given (see :func:`episode_sampler`).
        storage_kwargs: passed to :class:`~torchrl_ext.ShardedStorage`
            (``cache_bytes``, ``verify``, ``device``).
        **kwargs: passed to ``TensorDictReplayBuffer`` (``prefetch``, ...).

    Example:
        >>> import tempfile
        >>> from torchrl.data.datasets import load_dataset
        >>> from torchrl_ext.synthetic import write_synthetic
        >>> root = write_synthetic(tempfile.mkdtemp() + "/ds", episodes=3, length=5, obs_shape=(2,))
        >>> rb = load_dataset(f"torchrl_ext:{root}", batch_size=4, slice_len=2)
        >>> batch = rb.sample()
        >>> type(rb).__name__, batch.shape[0], bool((batch["episode"][0::2] == batch["episode"][1::2]).all())
        ('ShardedExperienceReplay', 4, True)
    """

    def __init__(self, dataset_id: str | os.PathLike, batch_size: int | None = None, *,
                 where: str | None = None, params: tuple = (), sampler: Any = None, writer: Any = None,
                 transform: Any = None, num_slices: int | None = None, slice_len: int | None = None,
                 strict_len: bool = True, replacement: bool = True,
                 storage_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        storage: Any = ShardedStorage(dataset_id, **(storage_kwargs or {}))
        if where is not None:
            storage = EpisodeView(storage, where, params)
        self.dataset_id = str(dataset_id)
        self.dataset_path = Path(storage.root)
        self.root = self.dataset_path.parent
        if sampler is None:
            sampler = episode_sampler(storage, num_slices=num_slices, slice_len=slice_len,
                                      strict_len=strict_len, replacement=replacement)
        super().__init__(storage=storage, batch_size=batch_size,
                         writer=writer if writer is not None else ImmutableDatasetWriter(),
                         sampler=sampler, transform=transform, **kwargs)

    @property
    def data_path(self) -> Path:
        """The dataset directory the buffer reads."""
        return self.dataset_path

    @property
    def data_path_root(self) -> Path:
        """The directory holding the dataset."""
        return self.root

    def _is_downloaded(self) -> bool:
        return (self.dataset_path / MANIFEST_NAME).is_file()

    @property
    def episodes(self) -> Any:
        """Episode id of every row, for ``SliceSampler(trajectories=...)``."""
        return self._storage.episodes

    def delete(self) -> None:
        """Refused: the dataset is the user's own data, not a download this buffer made."""
        raise PermissionError(
            f"{self.dataset_path} is a dataset this buffer opened, not one it downloaded; delete it with "
            "`shutil.rmtree` yourself if you mean to"
        )

    def preprocess(self, fn, dim=0, num_workers=None, *, dest, **kwargs):
        """TorchRL's ``preprocess``: ``fn`` over every row into a new dataset at ``dest``.

        Returns the new storage; ``swap=True`` also makes this buffer read it
        (see :func:`torchrl_ext.preprocessing.preprocess_buffer`).
        """
        new = preprocess_buffer(self, fn, dim, num_workers, dest=dest, **kwargs)
        if kwargs.get("swap"):
            self.dataset_path = Path(new.root)
        return new
