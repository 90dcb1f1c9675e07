"""The rows of one LeRobot episode from its ``data/chunk-CCC/file-FFF.parquet``, as numpy columns.

A data file holds several episodes back to back. An episode's rows are those
whose ``index`` lies in ``[dataset_from_index, dataset_to_index)`` of its
``meta/episodes`` row; they must be all there, in order, with ``frame_index``
``0..length-1`` and the episode's ``episode_index``, or the import stops with
a :class:`~torchrl_ext.format.FormatError` naming the data file. One file is
kept in memory at a time (episodes are read in order, so each file is read
once).

Columns: a scalar parquet column becomes ``[T]``; a list column (LeRobot's
``Sequence`` of a fixed length, or nested lists for more dimensions) becomes
``[T, *shape]`` after every list is checked to have the feature's length.
``image`` features (PNG or JPEG bytes in a struct, LeRobot's ``use_videos=False``)
are decoded with PyAV to ``uint8 [T, H, W, C]``. ``string`` features are not read.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ...format import FormatError
from .layout import EpisodeRef, Feature, LeRobotLayout, load_pyarrow

__all__ = ["DataFiles", "column_array"]

logger = logging.getLogger(__name__)

_FIX = "the dataset is damaged or not written by LeRobot; download it again"


def column_array(column: Any, shape: tuple[int, ...], dtype: str, where: str) -> np.ndarray:
    """A parquet column (chunked array) of ``n`` rows as ``[n, *shape]`` numpy values (``shape == (1,)``: ``[n]``
    when the column holds scalars)."""
    pa = load_pyarrow()
    arr = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    n = len(arr)
    if arr.null_count:
        raise FormatError(f"{where}: {arr.null_count} missing values; expected one per frame; {_FIX}")
    dims: list[int] = []
    while pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
        if pa.types.is_fixed_size_list(arr.type):
            size = arr.type.list_size
        else:
            offsets = np.asarray(arr.offsets.to_numpy(zero_copy_only=False), np.int64)
            sizes = np.diff(offsets)
            size = int(sizes[0]) if sizes.size else 0
            if sizes.size and not (sizes == size).all():
                raise FormatError(f"{where}: lists of lengths {sorted(set(sizes.tolist()))[:4]}; expected "
                                  f"{list(shape)} per frame; {_FIX}")
        dims.append(size)
        arr = arr.flatten()
        if arr.null_count:
            raise FormatError(f"{where}: missing values inside lists; {_FIX}")
    if tuple(dims) != shape and not (not dims and shape == (1,)):
        raise FormatError(f"{where}: values of shape {dims}, info.json says {list(shape)}; {_FIX}")
    try:
        values = np.asarray(arr.to_numpy(zero_copy_only=False))
    except (pa.ArrowException, TypeError, ValueError) as err:
        raise FormatError(f"{where}: not numbers ({err}); expected {dtype}; {_FIX}") from None
    if values.dtype.kind not in "biuf":
        raise FormatError(f"{where}: values of type {arr.type}, expected {dtype}; {_FIX}")
    return values.astype(dtype, copy=False).reshape(n, *dims)


def _decode_images(column: Any, feature: Feature, where: str) -> np.ndarray:
    """``image`` feature values (structs holding PNG/JPEG ``bytes``) -> ``uint8 [n, H, W, C]``."""
    import av

    h, w, c = feature.shape
    out = np.empty((len(column), h, w, c), np.uint8)
    for i, value in enumerate(column.to_pylist()):
        data = value.get("bytes") if isinstance(value, dict) else None
        if not isinstance(data, bytes) or not data:
            raise FormatError(f"{where}: frame {i} has no embedded image bytes; expected LeRobot's embedded images")
        kind = "png" if data[:4] == b"\x89PNG" else "mjpeg" if data[:2] == b"\xff\xd8" else None
        if kind is None:
            raise FormatError(f"{where}: frame {i} is neither PNG nor JPEG; {_FIX}")
        try:
            ctx = av.CodecContext.create(kind, "r")
            frames = ctx.decode(av.Packet(data)) + ctx.decode(None)
            img = frames[0].to_ndarray(format="gray" if c == 1 else "rgb24")
        except (av.error.FFmpegError, IndexError) as err:
            raise FormatError(f"{where}: frame {i} does not decode ({err}); {_FIX}") from None
        if img.shape[:2] != (h, w):
            raise FormatError(f"{where}: frame {i} is {img.shape[0]}x{img.shape[1]}, info.json says {h}x{w}; {_FIX}")
        out[i] = img.reshape(h, w, c)
    return out


class DataFiles:
    """Reads episodes' rows from the data files of ``layout``, keeping the last file read.

    Args:
        layout: the dataset's checked metadata.
        names: the features to read (numeric and ``image`` ones; never ``video`` or ``string``).
    """

    def __init__(self, layout: LeRobotLayout, names: list[str]) -> None:
        self.layout = layout
        self.names = names
        self._file: tuple[int, int] | None = None
        self._table: Any = None
        self._index: np.ndarray | None = None
        self._path: Path | None = None

    def _load(self, data_file: tuple[int, int]) -> None:
        if self._file == data_file:
            return
        path = self.layout.data_path(*data_file)
        columns = sorted({*self.names, "timestamp", "frame_index", "episode_index", "index", "task_index"})
        self._table = self.layout.read_parquet(path, columns)
        self._index = column_array(self._table.column("index"), (1,), "int64", f"{path}: column 'index'")
        self._file, self._path = data_file, path

    def episode(self, ep: EpisodeRef) -> dict[str, np.ndarray]:
        """``{feature name: [T, ...]}`` of episode ``ep``, with ``timestamp`` (float64) and ``task_index``."""
        self._load(ep.data_file)
        path, index = self._path, self._index
        at = np.flatnonzero(index == ep.first_row)
        start = int(at[0]) if at.size else len(index)
        stop = start + ep.length
        if stop > len(index) or not np.array_equal(index[start:stop], np.arange(ep.first_row, ep.first_row + ep.length)):
            found = int(((index >= ep.first_row) & (index < ep.first_row + ep.length)).sum())
            raise FormatError(f"{path}: episode {ep.index} needs the rows with index {ep.first_row}.."
                              f"{ep.first_row + ep.length - 1} in order, the file holds {found} of them; the "
                              f"offsets in {self.layout.root / 'meta/episodes'} point past the data")
        table = self._table.slice(start, ep.length)
        where = f"{path}: episode {ep.index}"
        frame_index = column_array(table.column("frame_index"), (1,), "int64", f"{where} frame_index")
        episode_index = column_array(table.column("episode_index"), (1,), "int64", f"{where} episode_index")
        if not np.array_equal(frame_index, np.arange(ep.length)) or not (episode_index == ep.index).all():
            raise FormatError(f"{where}: frame_index must be 0..{ep.length - 1} and episode_index {ep.index} on "
                              f"every row; {_FIX}")
        out = {"timestamp": column_array(table.column("timestamp"), (1,), "float64", f"{where} timestamp"),
               "task_index": column_array(table.column("task_index"), (1,), "int64", f"{where} task_index")}
        if not np.isfinite(out["timestamp"]).all():
            raise FormatError(f"{where}: timestamps that are not finite; {_FIX}")
        tasks = out["task_index"]
        if tasks.size and (tasks.min() < 0 or tasks.max() >= len(self.layout.tasks)):
            raise FormatError(f"{where}: task_index outside the {len(self.layout.tasks)} tasks of "
                              f"{self.layout.root / 'meta/tasks.parquet'}; {_FIX}")
        for name in self.names:
            f = self.layout.features[name]
            col_where = f"{where} column {name!r}"
            if f.dtype == "image":
                out[name] = _decode_images(table.column(name).combine_chunks(), f, col_where)
            else:
                out[name] = column_array(table.column(name), f.shape, f.dtype, col_where)
        return out
