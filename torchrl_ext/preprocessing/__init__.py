"""Map a function over a sharded dataset into a new sharded dataset, shard-parallel and resumable."""

from .buffer import preprocess_buffer
from .run import preprocess

__all__ = ["preprocess", "preprocess_buffer"]
