"""Compression dictionaries of encoded columns: ``<root>/dicts/<key>.zdict``, checked on read.

A ``zstd`` column written with ``dictionary=True`` names its dictionary in its
options: ``dictionary_file`` (relative path, ``dicts/`` + the key joined by
``.`` + ``.zdict``) and ``dictionary_crc`` (``"crc32:<hex>"`` of the file).
The file is written once, before the first shard that uses it, and never
changes; a reader refuses a missing file, one whose crc32 differs, and one
that resolves outside the root or is not a regular file.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

from .columns import Key
from .errors import FormatError
from .files import atomic_write_bytes, dataset_dir, read_inside, resolve_inside

__all__ = [
    "DICT_DIR", "DICTIONARY_OPTIONS", "dictionary_name", "write_dictionary", "read_dictionary",
    "load_dictionaries",
]

DICT_DIR = "dicts"
DICTIONARY_OPTIONS = ("dictionary_file", "dictionary_crc")  # column options that are not codec parameters


def dictionary_name(key: Key) -> str:
    return f"{DICT_DIR}/{'.'.join(key)}.zdict"


def write_dictionary(root: str | os.PathLike, key: Key, data: bytes) -> dict[str, str]:
    """Writes a column's dictionary atomically; returns the column options that name it."""
    rel = dictionary_name(key)
    atomic_write_bytes(dataset_dir(root, DICT_DIR) / Path(rel).name, data)
    return {"dictionary_file": rel, "dictionary_crc": f"crc32:{zlib.crc32(data):08x}"}


def read_dictionary(root: str | os.PathLike, options: dict, where: str) -> bytes | None:
    """The dictionary bytes a column's options name, or None when it has none."""
    rel = options.get("dictionary_file")
    if rel is None:
        return None
    if not isinstance(rel, str) or not rel.startswith(f"{DICT_DIR}/") or ".." in Path(rel).parts:
        raise FormatError(f"{where}: expected a dictionary file under {DICT_DIR}/, got {rel!r}")
    path = resolve_inside(root, rel, where)
    try:
        data = read_inside(root, path)
    except FileNotFoundError:
        raise FormatError(f"{path}: the compression dictionary is missing; restore it from a copy") from None
    found = f"crc32:{zlib.crc32(data):08x}"
    if found != options.get("dictionary_crc"):
        raise FormatError(
            f"{path}: checksum {found} does not match the manifest's {options.get('dictionary_crc')!r}; "
            "the dictionary is corrupt, restore it from a copy"
        )
    return data


def load_dictionaries(root: str | os.PathLike, columns) -> dict[Key, bytes]:
    """``{key: dictionary bytes}`` of the columns that use one."""
    where = str(Path(root) / "dataset.json")
    out = {}
    for col in columns:
        data = read_dictionary(root, col.options_dict, where)
        if data is not None:
            out[col.key] = data
    return out
