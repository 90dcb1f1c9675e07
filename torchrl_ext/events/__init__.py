"""Event index and window selection around events.

Data flow: the writer's event logs -> :class:`EventIndex` (built and saved
explicitly, read by everyone else) -> :func:`select_windows` with a
:class:`WindowQuery` -> :class:`Windows`, consumed by
:class:`~torchrl_ext.samplers.EventSliceSampler` (replay buffers) and
:class:`EventWindowDataset` (DataLoaders).
"""

from ..moved_paths import moved_names
from .dataset import EventWindowDataset, batchify
from .index import BUILD_MISSING, INDEX_DIR, EventIndex
from .index_file import IndexSource
from .query import WindowQuery
from .windows import (
    Windows,
    concat_windows,
    episode_in_train,
    select_windows,
    split_windows,
)

__all__ = [
    # index
    "EventIndex",
    "IndexSource",
    "INDEX_DIR",
    "BUILD_MISSING",
    # windows
    "WindowQuery",
    "Windows",
    "select_windows",
    "split_windows",
    "concat_windows",
    "episode_in_train",
    # DataLoader dataset
    "EventWindowDataset",
    "batchify",
]

# moved to torchrl_ext.interop.minestudio (old names still resolve, with a warning)
__getattr__ = moved_names(__name__, dict.fromkeys(
    ("MineStudioItems", "ItemSpec", "minestudio_spec", "agent_action", "CameraQuantization"),
    "torchrl_ext.interop.minestudio"))
