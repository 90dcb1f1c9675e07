"""Column files of a shard: the dtype table, file names, opening, TensorDict metadata, size checks.

A ``raw`` column is one C-contiguous file ``<leaf>.memmap`` of ``rows`` rows;
an encoded column is the pair ``<leaf>.chunks`` / ``<leaf>.index`` specified
in :mod:`torchrl_ext.encodings.chunk_format`. Nested keys are subdirectories.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import FormatError

if TYPE_CHECKING:
    from .manifest import Column, Manifest

__all__ = [
    "DTYPES",
    "Key",
    "TD_META_TYPE",
    "column_path",
    "column_files",
    "open_column",
    "write_td_meta",
    "validate_shards",
]

Key = tuple[str, ...]

# numpy dtype name -> torch dtype name: the dtypes a column may have.
DTYPES: dict[str, str] = {
    "bool": "bool", "uint8": "uint8", "int8": "int8", "int16": "int16",
    "int32": "int32", "int64": "int64", "float16": "float16",
    "float32": "float32", "float64": "float64", "uint16": "uint16",
    "uint32": "uint32", "uint64": "uint64",
}

# The class path tensordict records in ``meta.json``; checked against the
# installed tensordict by tests/compat (``str(tensordict.TensorDict)``).
TD_META_TYPE = "<class 'tensordict._td.TensorDict'>"

RAW_SUFFIX = ".memmap"
CHUNKS_SUFFIX = ".chunks"
INDEX_SUFFIX = ".index"


def column_path(shard_dir: Path, key: Key, suffix: str = RAW_SUFFIX) -> Path:
    """Path of a column's file inside a shard directory (``suffix`` picks the file)."""
    return Path(shard_dir).joinpath(*key[:-1], f"{key[-1]}{suffix}")


def column_files(shard_dir: Path, col: Column) -> list[Path]:
    """Every file that stores ``col`` in a shard, in checksum order."""
    if col.encoding == "raw":
        return [column_path(shard_dir, col.key)]
    return [column_path(shard_dir, col.key, CHUNKS_SUFFIX), column_path(shard_dir, col.key, INDEX_SUFFIX)]


def open_column(path: Path, dtype: np.dtype, shape: tuple[int, ...], rows: int) -> np.ndarray:
    """A read-only view of a raw column file (zeros for an empty column).

    A plain ndarray view: ``np.memmap``'s subclass hooks cost ~25 us per indexing call.
    """
    if rows == 0 or int(np.prod(shape, dtype=np.int64)) * dtype.itemsize == 0:
        return np.zeros((rows, *shape), dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(rows, *shape)).view(np.ndarray)


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
        (d / "meta.json").write_text(json.dumps(meta), encoding="utf-8")


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def validate_shards(root: str | os.PathLike, manifest: Manifest) -> None:
    """Checks every shard directory and file: present, inside the root, of the right size."""
    from .files import resolve_inside
    from .manifest import final_columns

    root = Path(root)
    where = str(root / "dataset.json")
    finals_schema = final_columns(manifest)
    for shard in manifest.shards:
        d = resolve_inside(root, shard.dir, where)
        if not d.is_dir():
            raise FormatError(
                f"{root / shard.dir}: shard listed in {where} is missing; restore it or "
                "rewrite the dataset"
            )
        expect = [(col, shard.rows, d) for col in manifest.schema]
        if shard.finals:
            expect += [(col, shard.finals, d / "final") for col in finals_schema]
        for col, rows, base in expect:
            for p in column_files(base, col):
                found = _size(p)
                if found is None:
                    raise FormatError(f"{p}: column file is missing; expected it for {rows} rows")
                if p.suffix == RAW_SUFFIX and found != rows * col.row_bytes:
                    raise FormatError(
                        f"{p}: expected {rows * col.row_bytes} bytes ({rows} rows of {col.shape} "
                        f"{col.dtype}), found {found}; the file is truncated or corrupt"
                    )
