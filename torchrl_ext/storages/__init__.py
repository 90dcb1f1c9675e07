"""Reading sharded datasets: a pure reader, the TorchRL ``Storage`` adapter over it, and filtered views."""

from ..format.episode_filters import combine_where, where_clause
from .dataset import RowDataset, collate_rows
from .episode_view import EpisodeView
from .narrow import NarrowStorage
from .reader import VERIFY_MODES, ShardReader
from .sharded import ShardedStorage

__all__ = [
           "VERIFY_MODES",
           "EpisodeView",
           "NarrowStorage",
           "RowDataset",
           "ShardReader",
           "ShardedStorage",
           "collate_rows",
           "combine_where",
           "where_clause",
]
