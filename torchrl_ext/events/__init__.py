"""Event index and window selection around events."""

from .dataset import EventWindowDataset, batchify
from .index import INDEX_DIR, EventIndex
from .windows import WindowQuery, Windows, concat_windows, episode_in_train, select_windows, split_windows

__all__ = [
    "EventIndex",
    "INDEX_DIR",
    "WindowQuery",
    "Windows",
    "select_windows",
    "split_windows",
    "concat_windows",
    "episode_in_train",
    "EventWindowDataset",
    "batchify",
]
