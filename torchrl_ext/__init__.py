"""torchrl_ext: sharded memmap datasets, storages and event-aware samplers for TorchRL."""

from .datasets import AtariDQNExperienceReplay
from .episodes import EpisodeTable
from .format import FORMAT_VERSION, FormatError, Manifest, read_manifest
from .storages import ShardedStorage
from .writer import ShardWriter
from .preprocessing import preprocess, preprocess_buffer
from .events import EventIndex, EventWindowDataset, WindowQuery
from .samplers import EventSliceSampler

__version__ = "0.1.0"

__all__ = [
    # format
    "FORMAT_VERSION",
    "FormatError",
    "Manifest",
    "read_manifest",
    # writing
    "ShardWriter",
    "EpisodeTable",
    # reading
    "ShardedStorage",
    # events
    "EventIndex",
    "WindowQuery",
    "EventSliceSampler",
    "EventWindowDataset",
    # preprocessing
    "preprocess",
    "preprocess_buffer",
    # ready-made datasets
    "AtariDQNExperienceReplay",
]
