"""TorchRL ``Storage`` implementations over sharded memmap datasets."""

from .dataset import RowDataset, collate_rows
from .sharded import ShardedStorage

__all__ = ["ShardedStorage", "RowDataset", "collate_rows"]
