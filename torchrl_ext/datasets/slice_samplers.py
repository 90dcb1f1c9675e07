"""TorchRL's slice samplers, reading only the flags they use from a storage that can narrow its reads.

``SliceSampler.sample`` reads ``storage[index]`` of the rows it sampled for
the done, terminated and ``is_init`` flags of its info. Over a
:class:`~torchrl_ext.ShardedStorage` that read gathers every column of those
rows (frames included): most of a sample's time. These subclasses pass
``storage.narrow(keys)`` instead, ``keys`` being the ones
:func:`~torchrl_ext.compat.torchrl_samplers.slice_sampler_keys` names, so the
indices and info are the same as TorchRL's for the same random state.
A storage without ``narrow`` is read as it is.
"""

from __future__ import annotations

from typing import Any

from torchrl.data.replay_buffers import SliceSampler, SliceSamplerWithoutReplacement

from ..compat.torchrl_samplers import slice_sampler_keys

__all__ = ["NarrowSliceSampler", "NarrowSliceSamplerWithoutReplacement", "narrowed"]


def narrowed(sampler: SliceSampler, storage: Any) -> Any:
    """``storage.narrow(keys the sampler reads)``, or ``storage`` when it cannot narrow or the keys are unknown."""
    narrow = getattr(storage, "narrow", None)
    keys = slice_sampler_keys(sampler) if narrow is not None else None
    return storage if keys is None else narrow(keys)


class NarrowSliceSampler(SliceSampler):
    """TorchRL's ``SliceSampler`` (same arguments), reading from the storage only the flags it uses.

    Example:
        >>> import tempfile
        >>> from torchrl_ext import ShardedStorage
        >>> from torchrl_ext.synthetic import write_synthetic
        >>> storage = ShardedStorage(write_synthetic(tempfile.mkdtemp() + "/ds", episodes=3, length=6,
        ...                                          obs_shape=(2,)))
        >>> sampler = NarrowSliceSampler(slice_len=3, trajectories=storage.episodes, cache_values=True)
        >>> index, info = sampler.sample(storage, 6)
        >>> info["next", "truncated"].view(-1).tolist()
        [False, False, True, False, False, True]
    """

    def sample(self, storage: Any, batch_size: int) -> tuple[Any, dict]:
        return super().sample(narrowed(self, storage), batch_size)


class NarrowSliceSamplerWithoutReplacement(SliceSamplerWithoutReplacement):
    """TorchRL's ``SliceSamplerWithoutReplacement`` (same arguments), reading only the flags it uses."""

    def sample(self, storage: Any, batch_size: int) -> tuple[Any, dict]:
        return super().sample(narrowed(self, storage), batch_size)

