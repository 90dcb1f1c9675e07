"""The base class for this package's TorchRL samplers: TorchRL's private sampler hooks, in one place.

TorchRL's ``Sampler`` (``torchrl.data.replay_buffers.samplers``) is public,
but a sampler that works inside a replay buffer also depends on private parts
of it. This module is the only place that touches them:

* ``type(Sampler).__call__`` (TorchRL's ``_SamplerMeta``) pops a
  ``replacement=`` keyword before ``__init__`` runs, and dispatches
  ``replacement=False`` to another class. A sampler that implements both
  modes itself needs the keyword: :class:`SamplerBase` uses a metaclass that
  calls ``__init__`` with every argument.
* ``Sampler.can_sample`` (and ``SamplerEnsemble``) call
  ``sampler._sampleable_count(storage, batch_size)``; :class:`SamplerBase`
  forwards it to the public :meth:`SamplerBase.sampleable_count`.
* ``ReplayBuffer.empty()`` calls ``sampler._empty()`` (an abstract method);
  :class:`SamplerBase` forwards it to :meth:`SamplerBase.reset`.

Subclasses implement ``sample``, ``state_dict``, ``load_state_dict``,
``dumps``, ``loads`` (TorchRL's public abstract methods) and, if they keep
state, ``reset`` and ``sampleable_count``. ``tests/compat/test_torchrl_samplers.py``
checks each point above against the installed TorchRL.

Examples:
    >>> import torch
    >>> class Every(SamplerBase):
    ...     def __init__(self, *, replacement=True):
    ...         self.replacement = replacement
    ...     def sample(self, storage, batch_size):
    ...         return torch.arange(batch_size), {}
    ...     def state_dict(self):
    ...         return {}
    ...     def load_state_dict(self, state_dict):
    ...         pass
    ...     def dumps(self, path):
    ...         pass
    ...     def loads(self, path):
    ...         pass
    >>> Every(replacement=False).replacement
    False
"""

from __future__ import annotations

from typing import Any

from torchrl.data.replay_buffers.samplers import Sampler

__all__ = ["SamplerBase"]

_TorchRLSamplerMeta = type(Sampler)


class _AllKeywordsMeta(_TorchRLSamplerMeta):
    """TorchRL's sampler metaclass, minus its ``replacement=`` dispatch: a plain class call."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return type.__call__(cls, *args, **kwargs)


class SamplerBase(Sampler, metaclass=_AllKeywordsMeta):
    """A TorchRL ``Sampler`` whose constructor receives every keyword and whose hooks are public.

    ``isinstance(s, torchrl.data.replay_buffers.samplers.Sampler)`` holds, so
    replay buffers and ensembles accept it.
    """

    def sampleable_count(self, storage: Any, batch_size: int) -> int:
        """How many items ``sample`` can draw from; 0 makes ``can_sample`` False (default: ``len(storage)``)."""
        return len(storage)

    def reset(self) -> None:
        """Forgets the sampling state (``ReplayBuffer.empty()`` calls it); the default keeps nothing."""

    def _sampleable_count(self, storage: Any, batch_size: int) -> int:
        return self.sampleable_count(storage, batch_size)

    def _empty(self) -> None:
        self.reset()
