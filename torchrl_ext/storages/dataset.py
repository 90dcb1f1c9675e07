"""A thin map-style ``torch.utils.data.Dataset`` over a :class:`ShardedStorage`."""

from __future__ import annotations

import os
from typing import Any

from tensordict import TensorDict
from torch.utils.data import Dataset

from .episode_view import EpisodeView
from .sharded import ShardedStorage

__all__ = ["RowDataset", "collate_rows"]


class RowDataset(Dataset):
    """Rows of a sharded dataset as a map-style Dataset.

    ``__getitems__`` reads a whole DataLoader batch with one routed gather, so
    use it with ``collate_fn=collate_rows``. The storage pickles by path:
    worker processes reopen the memory maps instead of copying data.

    Example:
        >>> import tempfile
        >>> from torch.utils.data import DataLoader
        >>> from torchrl_ext.synthetic import write_synthetic
        >>> root = write_synthetic(tempfile.mkdtemp() + "/ds", episodes=3, length=4, obs_shape=(2,))
        >>> loader = DataLoader(RowDataset(ShardedStorage(root)), batch_size=4, collate_fn=collate_rows)
        >>> [b["step"].tolist() for b in loader]
        [[0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 3]]
    """

    def __init__(self, storage: ShardedStorage | EpisodeView | str | os.PathLike | Any) -> None:
        # a path or URL is opened; any storage with ``get`` (frame stacks, several runs) is used as it is
        self.storage = ShardedStorage(storage) if isinstance(storage, (str, os.PathLike)) else storage

    def __len__(self) -> int:
        return len(self.storage)

    def __getitem__(self, index: int) -> TensorDict:
        return self.storage.get(index)

    def __getitems__(self, indices: list[int]) -> TensorDict:
        return self.storage.get(indices)


def collate_rows(batch: Any) -> TensorDict:
    """Collate for :class:`RowDataset`: a batched read is already a TensorDict."""
    if isinstance(batch, TensorDict):
        return batch
    return TensorDict.stack(list(batch))  # plain __getitem__ path (e.g. a custom sampler)
