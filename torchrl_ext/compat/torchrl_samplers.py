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
state, ``reset`` and ``sampleable_count``.

:func:`slice_sampler_keys` names the storage keys TorchRL's ``SliceSampler``
(and ``SliceSamplerWithoutReplacement``) reads inside ``sample``, so a
storage can serve those reads narrowly. It depends on how ``sample`` reads:

* ``_finalize_index`` reads ``storage[index]`` of the sampled rows only for
  the done and terminated keys beside ``truncated_key`` (when that is set),
  and ``_maybe_emit_init_marker`` for ``init_key`` (when set).
* Boundaries given at construction (``trajectories=`` or ``ends=``) sit in
  ``sampler._cache["static-stop-and-length"]``; without them
  ``_get_stop_and_length`` reads ``storage[:]`` for ``traj_key``, ``end_key``
  or ``end_keys``, and ``_resolve_traj_key`` looks for
  ``("collector", "traj_ids")`` and ``"episode"`` in ``storage[0:1]``.
* ``fragmented=True`` reads through another index: no narrow key list.

``tests/compat/test_torchrl_samplers.py`` checks each point above against the
installed TorchRL.

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

from torchrl.data.replay_buffers.samplers import Sampler, SliceSampler

__all__ = ["SamplerBase", "slice_sampler_keys"]

_STATIC_BOUNDARIES = "static-stop-and-length"  # SliceSampler._cache entry of trajectories= / ends=
_TRAJ_KEY_CANDIDATES = (("collector", "traj_ids"), ("episode",))  # what SliceSampler._resolve_traj_key looks for

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


def slice_sampler_keys(sampler: SliceSampler) -> tuple[tuple[str, ...], ...] | None:
    """The storage keys ``sampler.sample(storage, n)`` reads, as key tuples; None when it is not known.

    A storage that returns only these keys from ``storage[index]`` gives the
    sampler the same indices and info as the full rows (keys it does not hold
    may be left out: TorchRL reads them with ``get(key, default=None)``).

    Examples:
        >>> import torch
        >>> sampler = SliceSampler(slice_len=4, trajectories=torch.zeros(8, dtype=torch.long), cache_values=True)
        >>> slice_sampler_keys(sampler)
        (('next', 'done'), ('next', 'terminated'), ('is_init',))
        >>> slice_sampler_keys(SliceSampler(slice_len=4, traj_key="run", truncated_key=None, init_key=None))
        (('run',), ('next', 'done'))
    """
    if getattr(sampler, "fragmented", False):
        return None
    keys: list[tuple[str, ...]] = []
    if sampler.truncated_key is not None:
        parent = _as_tuple(sampler.truncated_key)[:-1]
        keys += [(*parent, "done"), (*parent, "terminated")]
    if sampler.init_key is not None:
        keys.append(_as_tuple(sampler.init_key))
    if _STATIC_BOUNDARIES not in sampler._cache:
        found = [sampler.traj_key, sampler.end_key, *(getattr(sampler, "end_keys", None) or ())]
        if sampler.traj_key is None:
            found += _TRAJ_KEY_CANDIDATES
        keys = [_as_tuple(k) for k in found if k is not None] + keys
    return tuple(dict.fromkeys(keys))


def _as_tuple(key: str | tuple[str, ...]) -> tuple[str, ...]:
    return (key,) if isinstance(key, str) else tuple(key)
