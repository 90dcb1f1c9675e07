"""``NarrowStorage``: a storage whose reads return only some keys; everything else is the storage's own.

TorchRL's ``SliceSampler`` reads ``storage[index]`` of the rows it sampled
only for a few flags (done, terminated, ``is_init``). Over a
:class:`~torchrl_ext.ShardedStorage` that read gathers every column of those
rows, frames included; ``ShardedStorage.narrow(keys)`` gives the sampler this
view instead, whose reads gather only ``keys``.
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDict

from ..compat.torchrl_storage import warn_slice_scan
from ..format import Key

__all__ = ["NarrowStorage"]


class NarrowStorage:
    """A read-only view of a storage whose ``get`` / ``[]`` return only ``keys``.

    Every other attribute (``len``, ``shape``, ``episodes``, ``device``, the
    sampler-facing members TorchRL reads) is the storage's own, so a sampler
    given the view samples exactly as it would from the storage. Keys the
    storage does not hold are left out of the result.

    Args:
        storage: a :class:`~torchrl_ext.ShardedStorage` (anything with a
            ``reader`` whose ``gather(rows, keys)`` reads some columns, a
            ``device`` and a ``get``).
        keys: the key tuples reads return.
        gathers: True when the storage's rows are its reader's columns as
            stored; the view then reads only ``keys``. False (a row view such
            as frame stacking rewrites rows) reads full rows and keeps ``keys``.

    Example:
        >>> import tempfile
        >>> from torchrl_ext import ShardedStorage
        >>> from torchrl_ext.synthetic import write_synthetic
        >>> storage = ShardedStorage(write_synthetic(tempfile.mkdtemp() + "/ds", episodes=2, length=3,
        ...                                          obs_shape=(2,)))
        >>> flags = storage.narrow([("next", "done")])
        >>> flags[[1, 2]]["next", "done"].tolist(), sorted(flags[[1, 2]].keys(True, True)), len(flags)
        ([[False], [True]], [('next', 'done')], 6)
    """

    def __init__(self, storage: Any, keys: tuple[Key, ...], *, gathers: bool) -> None:
        self.storage = storage
        self.keys = keys
        self.gathers = gathers

    def get(self, index: Any) -> TensorDict:
        """The rows at ``index`` (any index the storage takes), with only ``keys``."""
        if isinstance(index, slice) and index == slice(None):
            warn_slice_scan(self.storage)
        if not self.gathers:
            return self.storage.get(index).select(*self.keys, strict=False)
        reader = self.storage.reader
        idx = reader.index_array(index)
        arrays = reader.gather(idx.reshape(-1), self.keys)
        td = TensorDict(batch_size=idx.shape)
        for key in self.keys:
            value = arrays.get(key)
            if value is not None:
                td.set(key, torch.from_numpy(value.reshape(idx.shape + value.shape[1:])))
        if self.storage.device.type != "cpu":
            td = td.to(self.storage.device, non_blocking=True)
        return td

    def __getitem__(self, index: Any) -> TensorDict:
        return self.get(index)

    def __len__(self) -> int:
        return len(self.storage)

    def __getattr__(self, name: str) -> Any:
        if name in ("storage", "keys", "gathers") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.storage, name)

    def set(self, *args: Any, **kwargs: Any) -> None:
        """Refused: a narrow view only reads."""
        raise RuntimeError(f"{type(self).__name__} only reads; write through the storage it narrows")

    __setitem__ = set

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.storage!r}, keys={list(self.keys)})"


class NarrowRows(NarrowStorage):
    """A row-mapping view (``EpisodeView``) narrowed: its rows mapped to its base's, read through
    ``base.narrow(keys)``; everything else is the view's own.

    Args:
        view: a storage with ``base_rows(index)`` (view rows -> base rows, same shape).
        narrowed_base: ``view.base.narrow(keys)``.
    """

    def __init__(self, view: Any, narrowed_base: NarrowStorage) -> None:
        super().__init__(view, narrowed_base.keys, gathers=False)
        self.narrowed_base = narrowed_base

    def get(self, index: Any) -> TensorDict:
        """The view rows at ``index``, with only ``keys``."""
        if isinstance(index, slice) and index == slice(None):
            warn_slice_scan(self.storage)
        return self.narrowed_base.get(self.storage.base_rows(index))

    def __getattr__(self, name: str) -> Any:
        if name == "narrowed_base":
            raise AttributeError(name)
        return super().__getattr__(name)
