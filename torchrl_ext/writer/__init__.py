"""The writer side: episodes in, shards + episode table + event logs out.

- :mod:`.shard_writer`: :class:`ShardWriter` (check episodes, route their rows into shards).
- :mod:`.schema`: schema inference and validation of episodes and outputs.
- :mod:`.column_encodings`: ``create``'s encodings, kept in the manifest until the schema takes them on.
- :mod:`.encoded`: columns handed over as chunks encoded elsewhere.
- :mod:`.dictionaries`: episodes held back until zstd dictionaries are trained.
- :mod:`.rolling`: episodes' rows into the shard being written, the next one started when it is full.
- :mod:`.pending`: the files of a shard being written.
- :mod:`.commit`: committing a shard with the episodes and events it completes.
- :mod:`.directory`: the directory of a new dataset (its names, overwrite).
- :mod:`.recovery`: cleanup and resume after an interrupted write.
- :mod:`.lock`: the one-writer-per-dataset lock.

The episode table it fills is part of the format (:mod:`torchrl_ext.format.episodes`).
"""

from ..format.episodes import EpisodeTable
from ..moved_paths import moved_names
from .lock import LOCK_NAME, lock_dataset, unlock_dataset
from .pending import PendingShard, ShardColumns
from .shard_writer import DEFAULT_SHARD_BYTES, ShardWriter

__all__ = [
    "ShardWriter", "EpisodeTable", "DEFAULT_SHARD_BYTES",
    "PendingShard", "ShardColumns", "lock_dataset", "unlock_dataset", "LOCK_NAME",
]

# moved to torchrl_ext.preprocessing (an operation over a dataset; still resolves, with a warning)
__getattr__ = moved_names(__name__, {"add_episode_metadata": "torchrl_ext.preprocessing"})
