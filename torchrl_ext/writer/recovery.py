"""Resuming after an interrupted write: leftovers removed, a cut episode's rows dropped.

The manifest is the commit point. Anything on disk that it does not list is a
leftover of a write that never committed; rows of the last shards past
``num_rows`` belong to an episode cut off by the crash. A shard that holds
both committed rows and such rows is rewritten: its committed prefix is copied
into the next shard (:func:`copy_prefix`) before new rows are appended.
Episode-table rows past ``num_episodes`` were inserted by a commit that never
replaced the manifest; :func:`open_episode_table` drops them.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ..format import FINAL_ROW, Manifest, ShardInfo, dataset_dir, final_columns
from ..format.episodes import EpisodeTable
from .pending import PendingShard, ShardColumns

__all__ = ["open_episode_table", "drop_leftovers", "drop_partial_tail", "copy_prefix"]

logger = logging.getLogger(__name__)


def open_episode_table(root: Path, manifest: Manifest) -> EpisodeTable:
    """Opens the dataset's episode table without the rows of episodes the manifest does not count."""
    table = EpisodeTable.from_dataset(root, manifest.episodes, create=True)  # inside the root, schema checked
    try:
        table.delete_from(manifest.num_episodes)
    except BaseException:
        table.close()
        raise
    return table


def drop_leftovers(root: Path, manifest: Manifest) -> None:
    """Removes shard directories and event logs that the manifest does not list.

    Raises:
        FormatError: ``shards/`` or ``events/`` resolves outside ``root`` (nothing is removed there).
    """
    listed = {Path(s.dir).name for s in manifest.shards}
    shards, events = dataset_dir(root, "shards"), dataset_dir(root, "events")
    for d in shards.iterdir():
        if d.name not in listed:
            logger.info("removing uncommitted leftover %s", d)
            shutil.rmtree(d, ignore_errors=True) if d.is_dir() else d.unlink()
    for f in root.glob("episodes.*.sqlite"):  # a table rewrite that never committed
        if f.name != manifest.episodes:
            f.unlink()
    logs = {Path(p).name for p in manifest.event_logs}
    for f in events.glob("log-*"):
        if f.name not in logs:
            f.unlink()


def drop_partial_tail(root: Path, manifest: Manifest) -> tuple[list[str], tuple[ShardInfo, int] | None]:
    """Drops shards past ``num_rows`` from ``manifest`` (in memory).

    Returns the dropped shard directories (removed after the next commit) and,
    when a dropped shard starts with committed rows, ``(shard, rows to keep)``.
    """
    if manifest.stored_rows == manifest.num_rows:
        return [], None
    start, keep, superseded, prefix = 0, [], [], None
    for shard in manifest.shards:
        if start + shard.rows <= manifest.num_rows:
            keep.append(shard)
        else:
            superseded.append(shard.dir)
            if start < manifest.num_rows:
                prefix = (shard, manifest.num_rows - start)
        start += shard.rows
    manifest.shards = keep
    logger.warning(
        "%s: dropping %d rows of an episode cut off by an interrupted write",
        root, start - manifest.num_rows,
    )
    return superseded, prefix


def copy_prefix(root: Path, manifest: Manifest, shard: ShardInfo, rows: int, pending: PendingShard,
                chunk_bytes: int = 64 << 20) -> None:
    """Copies the first ``rows`` rows (and their final values) of ``shard`` into ``pending``.

    Whole chunks of encoded columns are copied as stored (no decode, no
    re-encode: a lossy video column loses nothing more); rows past the last
    whole chunk, and raw columns, are copied ``chunk_bytes`` at a time.
    """
    src = ShardColumns(root / shard.dir, manifest.schema, shard.rows, pending.dictionaries, root=root)
    row_bytes = max(sum(c.row_bytes for c in manifest.schema), 1)
    step = max(1, chunk_bytes // row_bytes)
    for col in manifest.schema:
        first = 0
        if col.encoding != "raw":
            first = pending.append_column(col.key, src.encoded_prefix(col.key, rows))
        for a in range(first, rows, step):
            pending.append_column(col.key, src.read(col.key, a, min(rows, a + step)))
    pending.rows += rows
    pending.end_episode()  # the prefix ends where its last committed episode does
    if shard.finals:
        fin = ShardColumns(root / shard.dir / "final", final_columns(manifest), shard.finals, root=root)
        local = fin.read(FINAL_ROW, 0, shard.finals)
        for i in range(shard.finals):
            if local[i] < rows:
                values = {c.key: fin.read(c.key, i, i + 1)[0] for c in final_columns(manifest)[1:]}
                pending.append_final(int(local[i]), values)
