"""``torchrl-ext info ROOT``: shards, rows, episodes, bytes on disk and the schema.

``ROOT`` may be a URL (``gs://bucket/prefix``): the metadata is fetched into the
local cache and the column sizes come from one listing of the shards, so no
shard is downloaded.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..storages import ShardedStorage

__all__ = ["add_parser", "format_info", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        description="Summarise a dataset: format version, shards, rows, episodes, bytes on disk, "
                    "event logs and the schema of every column.",
    )
    p.add_argument("root", help="dataset directory, or a URL such as gs://bucket/prefix")
    p.set_defaults(func=run)


def _remote_url(storage: ShardedStorage) -> str | None:
    from ..remote.cache import ShardCache

    return ShardCache.read_marker(Path(storage.root))


def _file_size(storage: ShardedStorage) -> Callable[[Path], int]:
    """The size of a shard file: on disk, or in the bucket's listing for a remote dataset (nothing fetched)."""
    if _remote_url(storage) is None:
        return lambda p: p.stat().st_size
    from ..remote.dataset import RemoteDataset

    root = Path(storage.root)
    sizes = {rel: info.size for rel, info in RemoteDataset.attach(root).store.list("shards/").items()}
    return lambda p: sizes.get(p.relative_to(root).as_posix(), 0)  # an object not pushed counts 0


def _column_bytes(storage: ShardedStorage, col, size: Callable[[Path], int]) -> int:
    from ..format import column_files

    return sum(size(p) for s in storage.manifest.shards for p in column_files(storage.root / s.dir, col))


def _event_counts(storage: ShardedStorage) -> dict[str, int]:
    from collections import Counter

    from ..format import read_event_log

    counts: Counter = Counter()
    for rel in storage.manifest.event_logs:
        log = read_event_log(storage.root / rel, root=storage.root)
        names = log["names"][log["name_id"]]
        counts.update(str(n) for n in names[log["episode"] < storage.num_episodes])
    return dict(counts)


def format_info(storage: ShardedStorage) -> str:
    """The text ``torchrl-ext info`` prints."""
    m = storage.manifest
    nbytes = sum(s.bytes for s in m.shards)
    url = _remote_url(storage)
    lines = [
        f"dataset   {url or storage.root}",
        *([f"cached in {storage.root}"] if url else []),
        f"format    {m.format_version}",
        f"shards    {storage.num_shards}",
        f"rows      {len(storage)}",
        f"episodes  {storage.num_episodes}",
        f"bytes     {nbytes} ({nbytes / 2**20:.1f} MiB)",
        "",
        f"{'key':<24} {'dtype':<8} {'shape':<14} {'encoding':<10} {'on disk':>12} {'raw':>12} ratio",
    ]
    rows = int(storage.reader.offsets[-1])
    size = _file_size(storage)
    for col in m.schema:
        disk, raw = _column_bytes(storage, col, size), rows * col.row_bytes
        ratio = f"{raw / disk:.1f}x" if disk else "-"
        lines.append(f"{'/'.join(col.key):<24} {col.dtype.name:<8} {str(list(col.shape)):<14} "
                     f"{col.encoding:<10} {disk:>12} {raw:>12} {ratio}")
    for key in m.next_from_row:
        col = m.column(key)
        lines.append(f"{'next/' + '/'.join(key):<24} {col.dtype.name:<8} {str(list(col.shape)):<14} next row")
    table = storage.episode_table()
    try:
        meta = table.metadata_columns()
    finally:
        table.close()
    lines += ["", "metadata  " + (", ".join(f"{k} ({t.lower()})" for k, t in meta.items()) or "none")]
    counts = _event_counts(storage)
    lines.append(f"events    {sum(counts.values())} in {len(m.event_logs)} log file(s)")
    for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:20]:
        lines.append(f"  {name:<30} {n}")
    if len(counts) > 20:
        lines.append(f"  ... {len(counts) - 20} more names")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..storages import ShardedStorage

    print(format_info(ShardedStorage(args.root)))
    return 0
