"""The writer side: episodes in, shards + episode table + event logs out.

- :mod:`.shard_writer`: :class:`ShardWriter` (add episodes, commit shards).
- :mod:`.schema`: schema inference and validation of episodes and outputs.
- :mod:`.pending`: the files of a shard being written.
- :mod:`.recovery`: cleanup and resume after an interrupted write.
- :mod:`.episodes`: the SQLite episode table.
- :mod:`.lock`: the one-writer-per-dataset lock.
- :mod:`.add_metadata`: a metadata column computed per episode, added atomically.
"""

from .add_metadata import add_episode_metadata
from .episodes import EpisodeTable
from .lock import LOCK_NAME, lock_dataset, unlock_dataset
from .pending import PendingShard, ShardColumns
from .shard_writer import DEFAULT_SHARD_BYTES, ShardWriter

__all__ = [
    "ShardWriter", "EpisodeTable", "DEFAULT_SHARD_BYTES",
    "PendingShard", "ShardColumns", "lock_dataset", "unlock_dataset", "LOCK_NAME", "add_episode_metadata",
]
