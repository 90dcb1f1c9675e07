"""``torchrl-ext info ROOT``: shards, rows, episodes, bytes on disk and the schema."""

from __future__ import annotations

import argparse
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
    p.add_argument("root", help="dataset directory")
    p.set_defaults(func=run)


def format_info(storage: ShardedStorage) -> str:
    """The text ``torchrl-ext info`` prints."""
    m = storage.manifest
    nbytes = sum(s.bytes for s in m.shards)
    lines = [
        f"dataset   {storage.root}",
        f"format    {m.format_version}",
        f"shards    {storage.num_shards}",
        f"rows      {len(storage)}",
        f"episodes  {storage.num_episodes}",
        f"bytes     {nbytes} ({nbytes / 2**20:.1f} MiB)",
        f"events    {len(m.event_logs)} log file(s)",
        "",
        f"{'key':<24} {'dtype':<8} {'shape':<14} encoding",
    ]
    for col in m.schema:
        lines.append(f"{'/'.join(col.key):<24} {col.dtype.name:<8} {str(list(col.shape)):<14} {col.encoding}")
    for key in m.next_from_row:
        col = m.column(key)
        lines.append(f"{'next/' + '/'.join(key):<24} {col.dtype.name:<8} {str(list(col.shape)):<14} next row")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..storages import ShardedStorage

    print(format_info(ShardedStorage(args.root)))
    return 0
