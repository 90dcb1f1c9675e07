"""Operations over a dataset: map a function into a new dataset (shard-parallel, resumable), add episode metadata."""

from .add_metadata import add_episode_metadata
from .buffer import preprocess_buffer
from .presets import Chain, FrameStack, Grayscale, Resize, ToFloat, chain
from .run import preprocess

__all__ = ["preprocess", "preprocess_buffer", "add_episode_metadata", "Chain", "FrameStack", "Grayscale", "Resize",
           "ToFloat", "chain"]
