"""Contract of torchrl_ext.compat.torch_shared with the installed PyTorch."""

from __future__ import annotations

import pickle
from multiprocessing.reduction import ForkingPickler

import pytest
import torch
import torch.multiprocessing  # noqa: F401 - registers the tensor reductions workers use

from torchrl_ext.compat.torch_shared import shared_empty


def test_the_private_allocator_is_there():
    assert callable(getattr(torch.UntypedStorage, "_new_shared", None)), \
        "torch.UntypedStorage._new_shared is gone: update torchrl_ext/compat/torch_shared.py"


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.int64, torch.bool])
def test_a_shared_tensor_crosses_a_pickle_as_the_same_memory(dtype):
    t = shared_empty((3, 5, 7), dtype)
    assert t.is_shared() and t.is_contiguous() and t.shape == (3, 5, 7) and t.dtype == dtype
    t.copy_(torch.arange(105).reshape(3, 5, 7).to(dtype))
    back = pickle.loads(ForkingPickler.dumps(t))
    assert torch.equal(back, t)
    back[0, 0, 0] = back[0, 0, 0] if dtype == torch.bool else 99
    assert torch.equal(back, t)  # one storage: a write through one is seen through the other
