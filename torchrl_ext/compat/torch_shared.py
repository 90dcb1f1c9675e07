"""A tensor allocated in shared memory from the start (PyTorch's private ``UntypedStorage._new_shared``).

``torch.empty(...).share_memory_()`` allocates private memory, then moves it
into a new shared segment, copying every byte (2.3 ms for 3.6 MB here).
PyTorch's own ``default_collate`` allocates a worker's batch with
``_new_shared`` instead (1.0 ms, nothing copied); :func:`shared_empty` does the
same, and falls back to ``share_memory_`` if the private name goes away.
The contract test is ``tests/compat/test_torch_shared.py``.
"""

from __future__ import annotations

import torch

__all__ = ["PRIVATE_NAMES", "shared_empty"]

PRIVATE_NAMES = ("UntypedStorage._new_shared",)


def shared_empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised, C-contiguous CPU tensor of ``shape`` in shared memory."""
    numel = 1
    for n in shape:
        numel *= int(n)
    new_shared = getattr(torch.UntypedStorage, "_new_shared", None)
    if new_shared is None:  # pragma: no cover - a PyTorch without it
        return torch.empty(shape, dtype=dtype).share_memory_()
    storage = new_shared(numel * torch.empty(0, dtype=dtype).element_size())
    return torch.empty(0, dtype=dtype).set_(storage, 0, shape)
