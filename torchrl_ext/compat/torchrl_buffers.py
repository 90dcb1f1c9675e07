"""TorchRL ``ReplayBuffer`` internals for read-only dataset buffers: prefetch threads that read at once.

TorchRL's ``TensorDictReplayBuffer._sample`` holds the buffer's
``_replay_lock`` and ``_write_lock`` around both ``sampler.sample`` and
``storage.get``. With ``ReplayBuffer(prefetch=N)`` that serialises the
``N`` prefetch threads on the storage read, so decoding, which releases the
GIL, never runs on two cores at once (measured: 0.9x one thread).

A dataset buffer has nothing to protect the read from: its writer is
``ImmutableDatasetWriter`` and its storage is read-only and safe to read from
several threads (thread-local decompressors and scratch arrays, locked
caches). :class:`ConcurrentReads` keeps the locks around the sampler, whose
state is not thread-safe, and reads the storage outside them. It falls back
to TorchRL's own ``_sample`` whenever that would differ: a sample unit, a
writer that tracks generations, a storage that does not declare
``concurrent_reads = True``, or ``torch.compile`` tracing.

:data:`PRIVATE_NAMES` lists the private members used here; the contract test
(``tests/compat/test_torchrl_buffers.py``) checks that TorchRL's
``_sample`` still reads exactly those and that both paths return the same
batch for the same seed.
"""

from __future__ import annotations

import contextlib
from typing import Any

from tensordict.nn.utils import _set_dispatch_td_nn_modules
from torchrl.data.replay_buffers.replay_buffers.base import _storage_index
from torchrl.data.replay_buffers.utils import INT_CLASSES, pin_memory_output

try:
    from torch.compiler import is_compiling
except ImportError:  # pragma: no cover - older torch
    from torch._dynamo import is_compiling

__all__ = ["PRIVATE_NAMES", "ConcurrentReads", "reads_concurrently"]

# Private members of TorchRL's ReplayBuffer / TensorDictReplayBuffer this module reads.
PRIVATE_NAMES = ("_replay_lock", "_write_lock", "_sampler", "_storage", "_sample_unit", "_writer",
                 "_collate_fn", "_transform", "_pin_memory")


def reads_concurrently(buffer: Any) -> bool:
    """True when ``buffer``'s storage read may run outside its locks (see the module doc)."""
    return (getattr(buffer, "_sample_unit", None) is None
            and not getattr(buffer._writer, "tracks_generations", False)
            and getattr(buffer._storage, "concurrent_reads", False) is True
            and not is_compiling())


class ConcurrentReads:
    """Mixin for a ``TensorDictReplayBuffer`` over a read-only storage (put it first in the bases)."""

    def _sample(self, batch_size: int) -> tuple[Any, dict]:
        if not reads_concurrently(self):
            return super()._sample(batch_size)
        return self._sample_unlocked(batch_size)

    @pin_memory_output
    def _sample_unlocked(self, batch_size: int) -> tuple[Any, dict]:
        with self._replay_lock, self._write_lock:
            index, info = self._sampler.sample(self._storage, batch_size)
            info["index"] = index
        data = self._storage.get(_storage_index(index, self._storage))
        if not isinstance(index, INT_CLASSES):
            data = self._collate_fn(data)
        if self._transform is not None and len(self._transform):
            with data.unlock_() if hasattr(data, "unlock_") else contextlib.nullcontext(), \
                    _set_dispatch_td_nn_modules(True):
                data = self._transform(data)
        return data, info
