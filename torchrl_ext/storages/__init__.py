"""Reading sharded datasets: a pure reader, the TorchRL ``Storage`` adapter over it, and filtered views."""

from ..format.episode_filters import combine_where, where_clause
from .dataset import RowDataset, collate_rows
from .episode_view import EpisodeView
from .reader import VERIFY_MODES, ShardReader
from .sharded import ShardedStorage

__all__ = ["ShardReader", "ShardedStorage", "EpisodeView", "where_clause", "combine_where", "RowDataset",
           "collate_rows", "VERIFY_MODES"]
