"""``ReplayBuffer.dumps`` / ``loads`` over a :class:`~torchrl_ext.storages.ShardedStorage`.

A sharded dataset is read-only and already on disk, so a buffer checkpoint
records where it is and how many rows the buffer saw, not the rows:
``<path>/sharded_storage.json`` holds the storage's ``state_dict`` (``root``,
``num_rows``, ``num_shards``). Loading reopens that dataset (a dataset that
grew since keeps the rows the checkpoint saw) and refuses one with fewer rows.
"""

from __future__ import annotations

import os
from typing import Any

from torchrl.data.replay_buffers.checkpointers import StorageCheckpointerBase

from ..format import FormatError, atomic_write_json
from ..format.files import loads_json
from ..validation import user_path

__all__ = ["CHECKPOINT_NAME", "ShardedStorageCheckpointer"]

CHECKPOINT_NAME = "sharded_storage.json"
_MAX_BYTES = 1 << 16


class ShardedStorageCheckpointer(StorageCheckpointerBase):
    """Writes and reads the storage's ``state_dict`` as one small JSON file."""

    def dumps(self, storage: Any, path: str | os.PathLike) -> None:
        path = user_path(path, "path")
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path / CHECKPOINT_NAME, storage.state_dict())

    def loads(self, storage: Any, path: str | os.PathLike) -> None:
        file = user_path(path, "path") / CHECKPOINT_NAME
        try:
            with open(file, "rb") as fh:
                raw = fh.read(_MAX_BYTES + 1)
        except FileNotFoundError:
            raise FileNotFoundError(f"{file}: no ShardedStorage checkpoint here; pass the directory "
                                    "ReplayBuffer.dumps wrote") from None
        try:
            state = loads_json(raw) if len(raw) <= _MAX_BYTES else None
        except (UnicodeDecodeError, ValueError):  # not JSON, or nested too deep
            state = None
        if not (isinstance(state, dict) and isinstance(state.get("root"), str)
                and type(state.get("num_rows")) is int and state["num_rows"] >= 0):
            raise FormatError(f"{file}: expected a JSON object with `root` and `num_rows` as "
                              "ShardedStorageCheckpointer writes it; the file is corrupt, dump the buffer again")
        storage.load_state_dict(state)
