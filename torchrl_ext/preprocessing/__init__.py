"""Map a function over a sharded dataset into a new sharded dataset, shard-parallel and resumable."""

from .buffer import preprocess_buffer
from .presets import Chain, FrameStack, Grayscale, Resize, ToFloat, chain
from .run import preprocess

__all__ = ["preprocess", "preprocess_buffer", "Chain", "FrameStack", "Grayscale", "Resize", "ToFloat", "chain"]
