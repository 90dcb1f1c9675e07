"""Files of a shard being written: column files appended to, then sealed and renamed.

``PendingShard`` owns ``shards/.tmp-<id>/`` until :meth:`PendingShard.seal`
flushes, fsyncs, writes TensorDict's ``meta.json`` and renames it into place.
Raw columns are appended to their ``.memmap`` file as rows arrive; encoded
columns go through their encoding's chunk writer (:mod:`torchrl_ext.encodings`).
"""

from __future__ import annotations

import shutil
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..format import (
    SCHEME,
    Column,
    Key,
    ShardInfo,
    column_files,
    column_path,
    combine_crcs,
    commit_dir,
    current_umask,
    dataset_dir,
    open_column,
    write_td_meta,
)
from ..format.checksum import td_meta_crcs

__all__ = ["PendingShard", "ShardColumns"]


class _RawFile:
    """A raw column file appended to, with its running crc32."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "xb")
        self.crc = 0

    def append(self, arr: np.ndarray) -> None:
        buf = memoryview(np.ascontiguousarray(arr)).cast("B")
        self.f.write(buf)
        self.crc = zlib.crc32(buf, self.crc)

    def close(self) -> tuple[int, list[int]]:
        import os

        self.f.flush()
        os.fsync(self.f.fileno())
        n = self.f.tell()
        self.f.close()
        return n, [self.crc]

    def discard(self) -> None:
        self.f.close()


def _column_writer(directory: Path, col: Column, dictionaries: Mapping[Key, bytes]):
    if col.encoding == "raw":
        return _RawFile(column_path(directory, col.key))
    from ..encodings import encoded_column_writer

    return encoded_column_writer(directory, col, dictionaries.get(col.key))


class PendingShard:
    """An open ``shards/.tmp-*`` directory that rows are appended to.

    Args:
        root: dataset directory.
        shard_id: number of the shard (its directory name once sealed).
        schema: stored columns (with their encodings).
        final_cols: columns of ``final/`` (``row`` first), raw, or ``[]``.
        dictionaries: compression dictionaries of encoded columns, by key.
    """

    def __init__(self, root: Path, shard_id: int, schema: list[Column], final_cols: list[Column],
                 dictionaries: Mapping[Key, bytes] | None = None) -> None:
        self.shard_id = shard_id
        self.dir = dataset_dir(root, "shards") / f".tmp-{shard_id:06d}"
        if self.dir.is_symlink() or self.dir.is_file():  # planted: removed, never followed
            self.dir.unlink()
        elif self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(mode=0o777 & ~current_umask())  # new: every file below it is ours
        self.schema = schema
        self.final_cols = final_cols
        self.rows = 0
        self.finals = 0
        self.dictionaries = dict(dictionaries or {})
        self._writers = {c.key: _column_writer(self.dir, c, dictionaries or {}) for c in schema}
        self._final = {c.key: _RawFile(column_path(self.dir / "final", c.key)) for c in final_cols}

    def append(self, columns: Mapping[Key, Any]) -> None:
        """Appends rows: an array per column, or ``EncodedChunks`` for an encoded column."""
        n = 0
        for col in self.schema:
            n = self.append_column(col.key, columns[col.key])
        self.rows += n

    def append_column(self, key: Key, value: Any) -> int:
        """Appends rows to one column only (the caller adds them to ``rows`` once every column has them).

        Returns:
            The rows appended.
        """
        from ..encodings import EncodedChunks

        if isinstance(value, EncodedChunks):  # stored as they are
            self._writers[key].append_encoded(value)
            return len(value)
        arr = np.asarray(value)
        self._writers[key].append(arr)
        return int(arr.shape[0])

    def end_episode(self) -> None:
        """An episode ends at the current row: video columns end their chunk here.

        So a lossy chunk never holds two episodes' frames: copying committed
        episodes into another shard (a resume) moves whole chunks as stored,
        and decoding an episode never decodes its predecessor's frames.
        """
        for col in self.schema:
            if col.encoding == "video":
                self._writers[col.key].cut()

    def append_final(self, local_row: int, values: Mapping[Key, np.ndarray]) -> None:
        for col in self.final_cols:
            if col.key == ("row",):
                arr = np.asarray([local_row], dtype=np.int64)
            else:
                arr = np.ascontiguousarray(values[col.key], dtype=col.dtype)[None]
            self._final[col.key].append(arr)
        self.finals += 1

    def seal(self, root: Path, dest_name: str) -> ShardInfo:
        """Flushes, writes TensorDict metadata and renames into ``shards/<dest_name>``."""
        nbytes, crcs = 0, []
        for col in self.schema:
            n, c = self._writers[col.key].close()
            nbytes, crcs = nbytes + n, crcs + c
        final_crcs = []
        for col in self.final_cols:
            n, c = self._final[col.key].close()
            nbytes, final_crcs = nbytes + n, final_crcs + c
        if self.finals:
            crcs += final_crcs
        write_td_meta(self.dir, self.schema, self.rows)
        if self.final_cols:
            write_td_meta(self.dir / "final", self.final_cols, self.finals)
        metas = td_meta_crcs(self.dir)
        dest = Path(root) / "shards" / dest_name
        commit_dir(self.dir, dest)
        return ShardInfo(dir=f"shards/{dest_name}", rows=self.rows, bytes=nbytes,
                         checksum=combine_crcs(crcs, SCHEME), finals=self.finals, meta_crcs=metas)

    def discard(self) -> None:
        for w in [*self._writers.values(), *self._final.values()]:
            w.discard()
        shutil.rmtree(self.dir, ignore_errors=True)


class ShardColumns:
    """Reads row ranges of the columns of one committed shard directory (any encoding).

    Its files must resolve inside ``root``, the dataset directory (None: ``directory``).
    """

    def __init__(self, directory: Path, columns: list[Column], rows: int,
                 dictionaries: Mapping[Key, bytes] | None = None, root: Path | None = None) -> None:
        self._cols = {c.key: c for c in columns}
        self._dir = Path(directory)
        self._root = self._dir if root is None else Path(root)
        self._rows = rows
        self._dicts = dictionaries or {}
        self._open: dict[Key, Any] = {}

    def encoded_prefix(self, key: Key, stop: int) -> Any:
        """The whole chunks of an encoded column inside rows ``[0, stop)``, as stored (``EncodedChunks``)."""
        self.read(key, 0, 0)
        return self._open[key].encoded_prefix(stop)

    def read(self, key: Key, start: int, stop: int) -> np.ndarray:
        col = self._cols[key]
        if key not in self._open:
            if col.encoding == "raw":
                self._open[key] = open_column(column_path(self._dir, key), col.dtype, col.shape, self._rows,
                                              root=self._root)
            else:
                from ..encodings import encoded_column_reader

                self._open[key] = encoded_column_reader(self._dir, col, self._rows, self._dicts.get(key),
                                                        root=self._root)
        src = self._open[key]
        if isinstance(src, np.ndarray):
            return src[start:stop]
        return src.read(start, stop)

    def files(self) -> list[Path]:
        return [p for c in self._cols.values() for p in column_files(self._dir, c)]
