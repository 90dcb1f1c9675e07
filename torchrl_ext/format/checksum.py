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

TensorDict's ``meta.json`` files (what ``TensorDict.load_memmap`` reads) are
not part of the shard checksum, whose scheme stays fixed; a shard's
``meta_crcs`` in the manifest pairs each of them (its path relative to the
shard directory) with ``"crc32:<8 hex digits>"`` of its bytes
(:func:`td_meta_crcs`, :func:`check_td_meta`). Shards committed before these
were recorded have none, and their ``meta.json`` files are not checked.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path

from .errors import FormatError
from .files import open_inside, open_regular

__all__ = [
    "LEGACY_SCHEME",
    "SCHEME",
    "TD_META_NAME",
    "check_files",
    "check_td_meta",
    "combine_crcs",
    "file_crc32",
    "files_checksum",
    "td_meta_crcs",
]

SCHEME = "crc32-files"
LEGACY_SCHEME = "crc32"
TD_META_NAME = "meta.json"
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


def td_meta_crcs(shard_dir: Path) -> dict[str, str]:
    """``{path relative to shard_dir: "crc32:<hex>"}`` of every TensorDict ``meta.json`` in a shard being sealed."""
    out = {}
    for base, dirs, files in os.walk(shard_dir):  # symlinks are not followed
        dirs.sort()
        if TD_META_NAME in files:
            path = Path(base) / TD_META_NAME
            out[path.relative_to(shard_dir).as_posix()] = f"crc32:{file_crc32(path):08x}"
    return dict(sorted(out.items()))


def check_td_meta(shard_dir: Path, expected: Iterable[tuple[str, str]], *,
                  root: str | os.PathLike | None = None) -> None:
    """Raises ``FormatError`` naming the first ``meta.json`` whose crc32 is not the manifest's (or that is missing)."""
    for rel, crc in expected:
        path = shard_dir / rel
        try:
            found = f"crc32:{file_crc32(path, root=root):08x}"
        except FileNotFoundError:
            raise FormatError(f"{path}: TensorDict metadata listed in the manifest is missing; restore the shard "
                              "from a copy (`torchrl-ext verify` checks the rest)") from None
        if found != crc:
            raise FormatError(
                f"{path}: checksum {found} does not match the manifest's {crc}; the TensorDict metadata is "
                "corrupt, restore the shard from a copy or download it again"
            )
