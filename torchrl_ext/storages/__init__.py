"""TorchRL ``Storage`` implementations over sharded memmap datasets."""

from .sharded import ShardedStorage

__all__ = ["ShardedStorage"]
