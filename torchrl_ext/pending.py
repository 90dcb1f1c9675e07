"""Files of a shard being written: column files appended to, then sealed and renamed.

``PendingShard`` owns ``shards/.tmp-<id>/`` until :meth:`PendingShard.seal`
flushes, fsyncs, writes TensorDict's ``meta.json`` and renames it into place.
"""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .format import Column, Key, ShardInfo, column_path, fsync_dir, write_td_meta

__all__ = ["PendingShard", "flatten_episode"]


def flatten_episode(data: Any, prefix: Key = ()) -> dict[Key, np.ndarray]:
    """Nested TensorDict / mapping of tensors or arrays -> {key tuple: numpy array}."""
    out: dict[Key, np.ndarray] = {}
    items = data.items() if isinstance(data, Mapping) else data.items(include_nested=False)
    for k, v in items:
        key = (*prefix, k)
        if isinstance(v, Mapping) or (hasattr(v, "batch_size") and hasattr(v, "items")):
            out.update(flatten_episode(v, key))
        elif isinstance(v, torch.Tensor):
            out[key] = v.detach().cpu().numpy()
        elif isinstance(v, np.ndarray):
            out[key] = v
        else:
            raise TypeError(
                f"episode entry {key!r} must be a tensor or numpy array, got {type(v).__name__}"
            )
    return out



class PendingShard:
    """An open ``shards/.tmp-*`` directory that rows are appended to."""

    def __init__(self, root: Path, shard_id: int, schema: list[Column], final_cols: list[Column]) -> None:
        self.shard_id = shard_id
        self.dir = root / "shards" / f".tmp-{shard_id:06d}"
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        self.schema = schema
        self.final_cols = final_cols
        self.rows = 0
        self.finals = 0
        self._files = {}
        self._crc = {c.key: 0 for c in schema}
        for col in schema:
            p = column_path(self.dir, col.key)
            p.parent.mkdir(parents=True, exist_ok=True)
            self._files[col.key] = open(p, "xb")
        self._final_files = {}
        if final_cols:
            for col in final_cols:
                p = column_path(self.dir / "final", col.key)
                p.parent.mkdir(parents=True, exist_ok=True)
                self._final_files[col.key] = open(p, "xb")

    def append(self, columns: Mapping[Key, np.ndarray]) -> None:
        n = None
        for col in self.schema:
            arr = np.ascontiguousarray(columns[col.key])
            n = arr.shape[0]
            buf = memoryview(arr).cast("B")
            self._files[col.key].write(buf)
            self._crc[col.key] = zlib.crc32(buf, self._crc[col.key])
        self.rows += int(n or 0)

    def append_final(self, local_row: int, values: Mapping[Key, np.ndarray]) -> None:
        for col in self.final_cols:
            if col.key == ("row",):
                arr = np.asarray([local_row], dtype=np.int64)
            else:
                arr = np.ascontiguousarray(values[col.key], dtype=col.dtype)[None]
            self._final_files[col.key].write(memoryview(arr).cast("B"))
        self.finals += 1

    def seal(self, root: Path, dest_name: str) -> ShardInfo:
        """Flushes, writes TensorDict metadata and renames into ``shards/<dest_name>``."""
        nbytes = 0
        for f in [*self._files.values(), *self._final_files.values()]:
            f.flush()
            os.fsync(f.fileno())
            nbytes += f.tell()
            f.close()
        write_td_meta(self.dir, self.schema, self.rows)
        if self.final_cols:
            write_td_meta(self.dir / "final", self.final_cols, self.finals)
        crcs = struct.pack(f">{len(self.schema)}I", *(self._crc[c.key] for c in self.schema))
        dest = root / "shards" / dest_name
        os.rename(self.dir, dest)
        fsync_dir(dest.parent)
        return ShardInfo(
            dir=f"shards/{dest_name}",
            rows=self.rows,
            bytes=nbytes,
            checksum=f"crc32:{zlib.crc32(crcs):08x}",
            finals=self.finals,
        )

    def discard(self) -> None:
        for f in [*self._files.values(), *self._final_files.values()]:
            f.close()
        shutil.rmtree(self.dir, ignore_errors=True)
