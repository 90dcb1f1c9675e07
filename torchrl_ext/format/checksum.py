"""Shard checksums: computed while a shard is written, recomputed by ``verify``.

A shard's ``checksum`` is ``"<scheme>:<8 hex digits>"``, the crc32 of the
big-endian uint32 crc32s of its files, in order:

``crc32``
    (format version 1) the column files of the schema, in schema order.
``crc32-files``
    (format version 2) every file of the shard, one crc32 per column: of the
    concatenated bytes of the column's files
    (:func:`~torchrl_ext.format.columns.column_files`, e.g. ``.chunks`` then
    ``.index``), columns in schema order, then, when the shard stores final
    values, the ``final/`` columns in the order of
    :func:`~torchrl_ext.format.manifest.final_columns`.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path

from .errors import FormatError
from .files import open_inside, open_regular

__all__ = ["SCHEME", "LEGACY_SCHEME", "combine_crcs", "file_crc32", "files_checksum", "check_files"]

SCHEME = "crc32-files"
LEGACY_SCHEME = "crc32"
_READ = 16 << 20


def combine_crcs(crcs: Iterable[int], scheme: str = SCHEME) -> str:
    """The checksum string of per-file crc32s."""
    crcs = list(crcs)
    return f"{scheme}:{zlib.crc32(struct.pack(f'>{len(crcs)}I', *crcs)):08x}"


def file_crc32(path: Path, crc: int = 0, *, root: str | os.PathLike | None = None) -> int:
    """crc32 of a file's bytes, continuing from ``crc``; a regular file inside ``root`` when given."""
    with open_regular(path) if root is None else open_inside(root, path) as f:
        while chunk := f.read(_READ):
            crc = zlib.crc32(chunk, crc)
    return crc


def files_checksum(groups: Iterable[list[Path]], scheme: str = SCHEME, *,
                   root: str | os.PathLike | None = None) -> str:
    """Checksum of file groups: one crc32 per group over its files' concatenated bytes."""
    crcs = []
    for group in groups:
        crc = 0
        for p in group:
            crc = file_crc32(p, crc, root=root)
        crcs.append(crc)
    return combine_crcs(crcs, scheme)


def check_files(shard_dir: Path, paths: list[list[Path]], expected: str, scheme: str, *,
                root: str | os.PathLike | None = None) -> None:
    """Raises ``FormatError`` when the files' checksum differs from the manifest's (or a file is outside ``root``)."""
    try:
        found = files_checksum(paths, scheme, root=root)
    except FileNotFoundError as err:
        raise FormatError(f"{shard_dir}: {err.filename} is missing; restore the shard") from err
    if found != expected:
        raise FormatError(
            f"{shard_dir}: checksum {found} does not match the manifest's {expected}; the shard "
            "is corrupt, restore it from a copy or rewrite it from its source"
        )
