"""TorchRL storage internals a read-only, file-backed ``TensorStorage`` must answer.

``TensorStorage`` computes several private properties from an in-memory
tensor that a storage over files does not have; replay buffers, samplers and
writers call them. :func:`read_only_storage` defines each of them from the
storage's public ``__len__`` and ``storage_keys``, and makes every mutation
raise. :func:`bump_revision` tells TorchRL that the contents changed.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["PRIVATE_NAMES", "read_only_storage", "bump_revision"]

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


def read_only_storage(cls: type) -> type:
    """Class decorator: TensorStorage's derived members, answered from ``len(self)``.

    Also defines ``set`` (raises ``read_only_message``), ``contains(int)`` and
    ``flatten`` (the storage itself), the same for every read-only storage.

    The class must define ``__len__``, ``storage_keys`` (a list of key tuples),
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
    return cls


def bump_revision(storage: Any) -> None:
    """Marks the storage's contents as changed (TorchRL invalidates caches built over it)."""
    bump = getattr(storage, "_bump_mutation_revision", None)
    if bump is not None:
        bump()
