"""TorchRL's on-disk replay buffers, read as data: ``rb.dumps(path)`` directories and memmap TensorDicts.

Two layouts, both written by ``tensordict``'s ``memmap``:

* ``rb.dumps(path)`` of a buffer over a ``LazyMemmapStorage`` (or
  ``LazyTensorStorage``): ``path/storage/`` holds the TensorDict,
  ``path/storage/storage_metadata.json`` its filled length (``len``) and
  ``path/writer/metadata.json`` the writer's ``cursor`` and ``write_count``
  (a full circular buffer's oldest row is at the cursor).
* a memmap TensorDict directory (what TorchRL's D4RL, Minari, OpenX and
  Roboset wrappers keep on disk, or a ``LazyMemmapStorage``'s
  ``scratch_dir``): every row is data.

A TensorDict directory has ``meta.json``: ``{"shape": [N, ...], "<key>":
{"shape": [...], "dtype": "torch.float32", ...}, "<sub>": {"type":
"TensorDict"}, ...}``, one ``<key>.memmap`` file of raw C-order values per
tensor and one directory per sub-TensorDict with its own ``meta.json``.

The files come from elsewhere, so they are read as data only: JSON with a
size cap, key names from a small alphabet, dtypes from a list, each file's
size equal to its shape's bytes before it is mapped (read-only), every path
inside the directory and a regular file. Anything pickled (non-tensor
entries, ``prefetch.pkl``) is skipped, never loaded.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...format import FormatError
from ...format.files import inside_root, open_inside, read_json_object
from ...validation import user_path

__all__ = ["BufferColumns", "read_buffer_dir"]

logger = logging.getLogger(__name__)

Key = tuple[str, ...]
MAX_JSON_BYTES = 1 << 20
MAX_DEPTH = 8
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")
DTYPES = {f"torch.{n}": np.dtype(n) for n in
          ("uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64", "bool")}
SKIPPED = "(non-tensor data is kept as pickles by tensordict; it is skipped, never loaded)"


@dataclass
class BufferColumns:
    """The tensors of a stored buffer: ``columns`` (read-only memmaps, ``[capacity, ...]``) and
    ``order``, the rows that hold data, oldest first."""

    path: Path
    columns: dict[Key, np.ndarray]
    order: np.ndarray
    skipped: list[Key]


def _json(root: Path, path: Path) -> dict:
    return read_json_object(root, path, max_bytes=MAX_JSON_BYTES, expected="TensorDict metadata")


def _shape(value: object, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) > 16 or not all(
            isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 1 << 48 for n in value):
        raise FormatError(f"{where}: `shape` must be a list of at most 16 non-negative ints, got {value!r:.80}")
    return tuple(value)


def _tensor(root: Path, directory: Path, name: str, meta: dict, rows: int, key: Key) -> np.ndarray:
    where = f"{directory / 'meta.json'}: {'/'.join(key)}"
    dtype = DTYPES.get(meta.get("dtype"))  # type: ignore[arg-type]
    if dtype is None:
        raise FormatError(f"{where}: dtype {meta.get('dtype')!r:.40} is not one of {sorted(DTYPES)}; convert "
                          "the column before saving the buffer")
    if meta.get("is_nested"):
        raise FormatError(f"{where}: a nested (ragged) tensor; expected one shape per column, pad it first")
    shape = _shape(meta.get("shape"), where)
    if not shape or shape[0] != rows:
        raise FormatError(f"{where}: shape {list(shape)} does not start with the buffer's {rows} rows")
    path = directory / f"{name}.memmap"
    nbytes = math.prod(shape) * dtype.itemsize
    with open_inside(root, path) as f:
        size = os.fstat(f.fileno()).st_size
        if size != nbytes:
            raise FormatError(f"{path}: {size} bytes, expected {nbytes} for shape {list(shape)} of {dtype}; "
                              "the file is truncated or not this column's")
        if nbytes == 0:
            return np.zeros(shape, dtype)
        return np.memmap(f, dtype=dtype, mode="r", shape=shape)


def _walk(root: Path, directory: Path, rows: int | None, prefix: Key, out: dict[Key, np.ndarray],
          skipped: list[Key]) -> int:
    if len(prefix) > MAX_DEPTH:
        raise FormatError(f"{directory}: TensorDicts nested deeper than {MAX_DEPTH}; expected a replay buffer")
    meta = _json(root, directory / "meta.json")
    batch = _shape(meta.get("shape"), f"{directory / 'meta.json'}")
    if not batch:
        raise FormatError(f"{directory / 'meta.json'}: batch shape [] ; expected [rows] (a stored buffer)")
    if rows is None:
        rows = batch[0]
    elif batch[0] != rows:
        raise FormatError(f"{directory / 'meta.json'}: {batch[0]} rows, the parent has {rows}")
    for name, entry in meta.items():
        if name in ("shape", "device", "_type", "names"):
            continue
        key = (*prefix, name)
        if not isinstance(name, str) or not NAME.fullmatch(name) or name in (".", ".."):
            raise FormatError(f"{directory / 'meta.json'}: key {name!r:.40} is not a plain name "
                              "(letters, digits, _ . -); rename it before saving")
        if not isinstance(entry, dict):
            raise FormatError(f"{directory / 'meta.json'}: entry {name!r} must be an object, "
                              f"got {type(entry).__name__}")
        if entry.get("type") == "TensorDict":
            _walk(root, directory / name, rows, key, out, skipped)
        elif "dtype" in entry and "shape" in entry:
            out[key] = _tensor(root, directory, name, entry, rows, key)
        else:
            skipped.append(key)
            logger.warning("%s: %s is not a tensor %s", directory, "/".join(key), SKIPPED)
    return rows


def _order(root: Path, storage_dir: Path, rows: int) -> np.ndarray:
    """Rows holding data, oldest first: a dump's filled length and cursor, or every row."""
    meta_path = storage_dir / "storage_metadata.json"
    writer_path = storage_dir.parent / "writer" / "metadata.json"
    if not meta_path.exists():
        return np.arange(rows)
    length = _json(root, meta_path).get("len", rows)
    if not isinstance(length, int) or isinstance(length, bool) or not 0 <= length <= rows:
        raise FormatError(f"{meta_path}: `len` must be an int in [0, {rows}], got {length!r:.40}")
    writer = _json(root, writer_path) if writer_path.exists() else {}
    cursor, count = writer.get("cursor", 0), writer.get("write_count", length)
    for name, value in (("cursor", cursor), ("write_count", count)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise FormatError(f"{writer_path}: `{name}` must be a non-negative int, got {value!r:.40}")
    if length == rows and count > rows and 0 < cursor < rows:  # a full circular buffer: oldest at the cursor
        return np.concatenate([np.arange(cursor, rows), np.arange(cursor)])
    return np.arange(length)


def read_buffer_dir(path: str | os.PathLike) -> BufferColumns:
    """The columns and row order of a stored TorchRL buffer (``rb.dumps`` output or a memmap TensorDict).

    Raises:
        FileNotFoundError: ``path`` holds neither layout.
        FormatError: a malformed file (named).
    """
    root = user_path(path, "path")
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory; expected a TorchRL buffer saved with "
                                "rb.dumps(path) or a memmap TensorDict directory")
    storage_dir = root / "storage" if (root / "storage" / "meta.json").exists() else root
    if not (storage_dir / "meta.json").exists():
        raise FileNotFoundError(f"{root}: no meta.json here or in storage/; expected a TorchRL buffer saved "
                                "with rb.dumps(path) or a memmap TensorDict directory")
    inside_root(root, storage_dir)
    columns: dict[Key, np.ndarray] = {}
    skipped: list[Key] = []
    rows = _walk(root, storage_dir, None, (), columns, skipped)
    if not columns:
        raise FormatError(f"{storage_dir / 'meta.json'}: no tensor columns; expected a replay buffer's data")
    return BufferColumns(root, columns, _order(root, storage_dir, rows), skipped)
