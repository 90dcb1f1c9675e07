"""One shard's files as a whole: the list the checksum covers, and its verification."""

from __future__ import annotations

import os
from pathlib import Path

from .checksum import LEGACY_SCHEME, check_files
from .columns import RAW_SUFFIX, column_files
from .errors import FormatError
from .files import resolve_inside
from .manifest import MANIFEST_NAME, Column, Manifest, ShardInfo, final_columns

__all__ = ["shard_files", "verify_shard", "validate_shards"]


def shard_files(shard_dir: Path, schema: list[Column], final_cols: list[Column], finals: int,
                scheme: str) -> list[list[Path]]:
    """Files covered by a shard checksum of ``scheme``: one group per column, in checksum order."""
    groups = [column_files(shard_dir, col) for col in schema]
    if scheme != LEGACY_SCHEME and finals:
        groups += [column_files(shard_dir / "final", col) for col in final_cols]
    return groups


def verify_shard(root: str | os.PathLike, manifest: Manifest, shard: ShardInfo) -> None:
    """Recomputes one shard's checksum; ``FormatError`` on a mismatch or an unknown scheme."""
    d = resolve_inside(root, shard.dir, str(Path(root) / MANIFEST_NAME))
    scheme, sep, _ = shard.checksum.partition(":")
    if not sep:
        raise FormatError(f"{d}: the manifest gives no checksum for this shard; it cannot be verified")
    from .checksum import SCHEME

    if scheme not in (SCHEME, LEGACY_SCHEME):
        raise FormatError(
            f"{d}: checksum scheme {scheme!r} is unknown, this reader knows {(SCHEME, LEGACY_SCHEME)}; "
            "upgrade torchrl-ext"
        )
    files = shard_files(d, manifest.schema, final_columns(manifest), shard.finals, scheme)
    check_files(d, files, shard.checksum, scheme, root=root)


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def validate_shards(root: str | os.PathLike, manifest: Manifest) -> None:
    """Checks every shard directory and file: present, inside the root, of the right size."""
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
