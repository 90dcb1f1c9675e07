"""Reading sharded datasets: a pure reader and the TorchRL ``Storage`` adapter over it."""

from .dataset import RowDataset, collate_rows
from .reader import VERIFY_MODES, ShardReader
from .sharded import ShardedStorage

__all__ = ["ShardReader", "ShardedStorage", "RowDataset", "collate_rows", "VERIFY_MODES"]
