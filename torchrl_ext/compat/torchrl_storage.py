"""TorchRL storage internals a read-only, file-backed ``TensorStorage`` must answer.

``TensorStorage`` computes several private properties from an in-memory
tensor that a storage over files does not have; replay buffers, samplers and
writers call them. :func:`read_only_storage` defines each of them from the
storage's public ``__len__`` and ``storage_keys``, and makes every mutation
raise. :func:`bump_revision` tells TorchRL that the contents changed.

TorchRL's ``SliceSampler`` given ``traj_key=`` or ``end_key=`` (not
``trajectories=``) finds episode ends by reading ``storage[:]``: every row of
the dataset, on every sample unless ``cache_values=True`` (at 100k rows 50-90x
slower per sample than ``trajectories=storage.episodes``). A read-only
storage's ``get`` recognises that read by its caller (TorchRL's
``SliceSampler._get_stop_and_length`` or ``_end_signal_from_keys``, listed in
``SLICE_SCAN_NAMES``) and warns once per sampler.
"""

from __future__ import annotations

import functools
import sys
import warnings
import weakref
from typing import Any

import torch
from torchrl.data.replay_buffers.samplers import SliceSampler

__all__ = ["PRIVATE_NAMES", "SLICE_SCAN_NAMES", "bump_revision", "read_only_storage", "warn_slice_scan"]

# Private members of torchrl.data.replay_buffers.TensorStorage / Storage this module defines or calls.
PRIVATE_NAMES = (
    "_len",
    "_total_shape",
    "_len_along_dim0",
    "_is_full",
    "_storage_keys",
    "_max_size_along_dim0",
    "_rand_given_ndim",
    "_empty",
    "_bump_mutation_revision",
)

# Private methods of torchrl.data.replay_buffers.samplers.SliceSampler that read the whole storage.
SLICE_SCAN_NAMES = ("_get_stop_and_length", "_end_signal_from_keys")
_SLICE_SCANS = frozenset(getattr(SliceSampler, name).__code__ for name in SLICE_SCAN_NAMES
                         if hasattr(SliceSampler, name))
_SCAN_DEPTH = 4  # frames between get() and the sampler's method (Storage.__getitem__, wrappers)
_warned: weakref.WeakSet = weakref.WeakSet()


def _scanning_sampler() -> Any:
    """The ``SliceSampler`` whose episode-end scan is reading the storage, or None."""
    frame = sys._getframe(2)
    for _ in range(_SCAN_DEPTH):
        if frame is None:
            return None
        if frame.f_code in _SLICE_SCANS:
            return frame.f_locals.get("self")
        frame = frame.f_back
    return None


def warn_slice_scan(storage: Any) -> None:
    """Warns (once per sampler) when TorchRL's ``SliceSampler`` reads all of ``storage`` for episode ends."""
    sampler = _scanning_sampler()
    if sampler is None:
        return
    try:
        if sampler in _warned:
            return
        _warned.add(sampler)
    except TypeError:  # an unhashable sampler: warn every time
        pass
    warnings.warn(
        f"SliceSampler without `trajectories=` reads all {len(storage)} rows of {type(storage).__name__} "
        "to find episode ends; pass SliceSampler(trajectories=storage.episodes, cache_values=True) instead",
        UserWarning, stacklevel=4)


def read_only_storage(cls: type) -> type:
    """Class decorator: TensorStorage's derived members, answered from ``len(self)``.

    Also defines ``set`` (raises ``read_only_message``), ``contains(int)`` and
    ``flatten`` (the storage itself), the same for every read-only storage.

    Its ``get`` warns when TorchRL's ``SliceSampler`` reads every row to find
    episode ends (see the module docstring).

    The class must define ``get``, ``__len__``, ``storage_keys`` (a list of key tuples),
    ``read_only_message`` (the error text of every mutation) and ``random_rows(n)``
    (uniform row indices for TorchRL's samplers).
    """

    def _len(self) -> int:
        return len(self)

    def _total_shape(self) -> torch.Size:
        return torch.Size([len(self)])

    def _max_size_along_dim0(self, *, single_data=None, batched_data=None) -> int:
        return len(self)

    def _storage_keys(self) -> list:
        return self.storage_keys

    def _rand_given_ndim(self, batch_size: int) -> torch.Tensor:
        return self.random_rows(batch_size)

    def _empty(self):
        raise RuntimeError(self.read_only_message)

    def set(self, cursor: Any, data: Any, *, set_cursor: bool = True):
        raise RuntimeError(self.read_only_message)

    def contains(self, item: Any) -> bool:
        if isinstance(item, int):
            return -len(self) <= item < len(self)
        raise NotImplementedError(f"contains() takes an int, got {type(item).__name__}")

    def flatten(self):
        return self

    base_get = cls.get

    @functools.wraps(base_get)
    def get(self, index: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(index, slice) and index == slice(None):
            warn_slice_scan(self)
        return base_get(self, index, *args, **kwargs)

    cls._len = property(_len)
    cls._total_shape = property(_total_shape)
    cls.shape = property(_total_shape)
    cls._len_along_dim0 = property(_len)
    cls._is_full = property(lambda self: True)
    cls._storage_keys = property(_storage_keys)
    cls._max_size_along_dim0 = _max_size_along_dim0
    cls._rand_given_ndim = _rand_given_ndim
    cls._empty = _empty
    # public Storage methods, answered the same way by every read-only storage
    cls.set = set
    cls.contains = contains
    cls.flatten = flatten
    cls.get = get
    return cls


def bump_revision(storage: Any) -> None:
    """Marks the storage's contents as changed (TorchRL invalidates caches built over it)."""
    bump = getattr(storage, "_bump_mutation_revision", None)
    if bump is not None:
        bump()
