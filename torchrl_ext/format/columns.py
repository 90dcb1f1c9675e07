"""Column files of a shard: the dtype table, file names, opening, TensorDict metadata, size checks.

A ``raw`` column is one C-contiguous file ``<leaf>.memmap`` of ``rows`` rows;
an encoded column is the pair ``<leaf>.chunks`` / ``<leaf>.index`` specified
in :mod:`torchrl_ext.encodings.chunk_format`. Nested keys are subdirectories.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FormatError
from .files import open_inside

__all__ = [
    "DTYPES",
    "Key",
    "Column",
    "KNOWN_ENCODINGS",
    "MAX_ROW_BYTES",
    "TD_META_TYPE",
    "column_path",
    "column_files",
    "open_column",
    "write_td_meta",
]

Key = tuple[str, ...]

# numpy dtype name -> torch dtype name: the dtypes a column may have.
DTYPES: dict[str, str] = {
    "bool": "bool", "uint8": "uint8", "int8": "int8", "int16": "int16",
    "int32": "int32", "int64": "int64", "float16": "float16",
    "float32": "float32", "float64": "float64", "uint16": "uint16",
    "uint32": "uint32", "uint64": "uint64",
}

KNOWN_ENCODINGS = ("raw", "zstd", "video")
MAX_ROW_BYTES = 1 << 32  # 4 GiB per row and column
MAX_ROWS = 1 << 48

# The class path tensordict records in ``meta.json``; checked against the
# installed tensordict by tests/compat (``str(tensordict.TensorDict)``).
TD_META_TYPE = "<class 'tensordict._td.TensorDict'>"

RAW_SUFFIX = ".memmap"
CHUNKS_SUFFIX = ".chunks"
INDEX_SUFFIX = ".index"


def _plain_json(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


@dataclass(frozen=True)
class Column:
    """One stored column: its nested key, numpy dtype, per-row shape and encoding.

    ``options`` holds the encoding's parameters as sorted ``(name, value)``
    pairs of plain JSON scalars (see :mod:`torchrl_ext.encodings`).
    """

    key: Key
    dtype: np.dtype
    shape: tuple[int, ...]
    encoding: str = "raw"
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def options_dict(self) -> dict[str, Any]:
        return dict(self.options)

    def with_encoding(self, encoding: str, options: dict[str, Any] | None = None) -> Column:
        """This column with another encoding (``options`` may repeat the name; it is dropped)."""
        opts = {k: v for k, v in (options or {}).items() if k != "name"}
        return Column(self.key, self.dtype, self.shape, encoding, tuple(sorted(opts.items())))

    def to_json(self) -> dict[str, Any]:
        out = {
            "key": list(self.key),
            "dtype": self.dtype.name,
            "shape": list(self.shape),
            "encoding": self.encoding,
        }
        if self.options:
            out["options"] = dict(self.options)
        return out

    @classmethod
    def from_json(cls, entry: Any, where: str) -> Column:
        if not isinstance(entry, dict) or not {"key", "dtype", "shape"} <= entry.keys():
            raise FormatError(
                f"{where}: expected a schema entry with key, dtype and shape, got {entry!r}"
            )
        key, shape, dtype_name = entry["key"], entry["shape"], entry["dtype"]
        if (
            not isinstance(key, list)
            or not key
            or not all(isinstance(k, str) and k and "/" not in k and k not in (".", "..") for k in key)
        ):
            raise FormatError(f"{where}: expected a key as a list of plain names, got {key!r}")
        encoding = entry.get("encoding", "raw")
        if encoding not in KNOWN_ENCODINGS:
            raise FormatError(
                f"{where}: column {key!r} uses encoding {encoding!r}, this reader "
                f"knows {KNOWN_ENCODINGS}; upgrade torchrl-ext to read it"
            )
        if not isinstance(dtype_name, str) or dtype_name not in DTYPES:
            raise FormatError(
                f"{where}: column {key!r} has dtype {dtype_name!r}, expected one of {sorted(DTYPES)}"
            )
        if not isinstance(shape, list) or not all(
            type(s) is int and 0 <= s < MAX_ROWS for s in shape
        ) or len(shape) > 32:
            raise FormatError(f"{where}: expected a shape as a list of ints >= 0, got {shape!r}")
        dtype = np.dtype(dtype_name)
        row_bytes = dtype.itemsize
        for s in shape:
            row_bytes *= s
        if row_bytes > MAX_ROW_BYTES:
            raise FormatError(
                f"{where}: column {key!r} of shape {shape} is {row_bytes} bytes per row, more "
                f"than the {MAX_ROW_BYTES} this format allows"
            )
        options = entry.get("options", {})
        if not isinstance(options, dict) or not all(
            isinstance(k, str) and _plain_json(v) for k, v in options.items()
        ):
            raise FormatError(f"{where}: column {key!r} has options {options!r}, expected a flat JSON object")
        return cls(tuple(key), dtype, tuple(shape), encoding, tuple(sorted(options.items())))


def column_path(shard_dir: Path, key: Key, suffix: str = RAW_SUFFIX) -> Path:
    """Path of a column's file inside a shard directory (``suffix`` picks the file)."""
    return Path(shard_dir).joinpath(*key[:-1], f"{key[-1]}{suffix}")


def column_files(shard_dir: Path, col: Column) -> list[Path]:
    """Every file that stores ``col`` in a shard, in checksum order."""
    if col.encoding == "raw":
        return [column_path(shard_dir, col.key)]
    return [column_path(shard_dir, col.key, CHUNKS_SUFFIX), column_path(shard_dir, col.key, INDEX_SUFFIX)]


def open_column(path: Path, dtype: np.dtype, shape: tuple[int, ...], rows: int, *,
                root: str | os.PathLike) -> np.ndarray:
    """A read-only view of a raw column file of the dataset at ``root`` (zeros for an empty column).

    A plain ndarray view: ``np.memmap``'s subclass hooks cost ~25 us per indexing call.

    Raises:
        FileNotFoundError: the file is missing.
        FormatError: it resolves outside ``root``, is not a regular file, or
            holds fewer than ``rows`` rows.
    """
    row_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if rows == 0 or row_bytes == 0:
        return np.zeros((rows, *shape), dtype=dtype)
    with open_inside(root, path) as f:
        size = os.fstat(f.fileno()).st_size
        if size < rows * row_bytes:
            raise FormatError(f"{path}: expected {rows * row_bytes} bytes ({rows} rows of {list(shape)} {dtype}), "
                              f"found {size}; the file is truncated, restore it or rewrite the shard")
        return np.memmap(f, dtype=dtype, mode="r", shape=(rows, *shape)).view(np.ndarray)


def write_td_meta(directory: Path, columns: list[Column], rows: int) -> None:
    """Writes TensorDict's ``meta.json`` files so ``TensorDict.load_memmap`` opens raw columns."""
    tree: dict[Key, dict[str, Any]] = {(): {}}
    for col in columns:
        if col.encoding != "raw":
            continue
        for depth in range(1, len(col.key)):
            prefix = col.key[:depth]
            tree.setdefault(prefix, {})
            tree[prefix[:-1]][prefix[-1]] = {"type": "TensorDict"}
        tree[col.key[:-1]][col.key[-1]] = {
            "device": "cpu",
            "shape": [rows, *col.shape],
            "dtype": f"torch.{DTYPES[col.dtype.name]}",
            "is_nested": False,
        }
    for prefix, entries in tree.items():
        meta = dict(entries)
        meta.update(shape=[rows], device="cpu", _type=TD_META_TYPE)
        d = directory.joinpath(*prefix)
        d.mkdir(parents=True, exist_ok=True)
        with open(d / "meta.json", "x", encoding="utf-8") as f:  # O_EXCL: never through a planted symlink
            f.write(json.dumps(meta))
