"""The ``dest`` directory of a ``preprocess`` run: readied before the tasks run, committed after them.

Layout of ``dest`` while a run is under way (no manifest yet, so no reader opens it)::

    <dest>/.preprocess/plan.json          source fingerprint, row limit, output schema (RunPlan.to_json)
    <dest>/.preprocess/shard-<id>.json    record of each finished output shard
    <dest>/shards/<id>/                   finished output shards (one per task)
    <dest>/.incomplete                    a note saying how to resume (INCOMPLETE_NAME)

When every shard is finished the episode table and event logs are copied, the
manifest is written atomically (the commit point) and ``.preprocess/`` removed.
The caller holds the dataset lock of ``dest`` throughout.

A ``dest`` URL (``gs://bucket/prefix``) is written into the local staging
directory ``<cache dir>/push/<hash of the URL>`` (:func:`staging_dest`; the
cache directory is ``$TORCHRL_EXT_CACHE`` or ``~/.cache/torchrl_ext/remote``),
then pushed with ``dataset.json`` last and the staging directory removed
(:func:`publish`). A run interrupted before the push ends resumes from the
staging directory, and the push skips the objects already uploaded.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from ..format import (
    DICT_DIR,
    EPISODES_NAME,
    INCOMPLETE_NAME,
    MANIFEST_NAME,
    Manifest,
    ShardInfo,
    atomic_write_bytes,
    atomic_write_json,
    dataset_dir,
    filter_event_log,
    fsync_dir,
    read_inside,
    read_manifest,
    write_dictionary,
    write_manifest,
)
from ..format.files import loads_json
from ..remote.cache import ShardCache, default_cache_dir
from ..remote.publish import push
from ..remote.urls import is_remote, parse_url
from ..storages import ShardedStorage
from ..writer import LOCK_NAME, EpisodeTable
from .plan import PLAN_NAME, RunPlan
from .shard import WORK_DIR

__all__ = ["finish_dest", "prepare_dest", "publish", "staging_dest"]

logger = logging.getLogger(__name__)

_OURS = {MANIFEST_NAME, WORK_DIR, "shards", "events", EPISODES_NAME, LOCK_NAME, INCOMPLETE_NAME, DICT_DIR}
_RESUME_HINT = ("an unfinished preprocess() run, not a dataset yet; call preprocess() again with the "
                "same arguments to resume it")


def _clear(dest: Path) -> None:
    (dest / MANIFEST_NAME).unlink(missing_ok=True)  # first: dest stops being a dataset at once
    fsync_dir(dest)
    for name in _OURS - {LOCK_NAME, MANIFEST_NAME}:
        p = dest / name
        p.unlink(missing_ok=True) if p.is_symlink() or not p.is_dir() else shutil.rmtree(p)  # a link, not its target


def prepare_dest(plan: RunPlan, overwrite: bool) -> bool:
    """Returns True when ``plan.dest`` already holds the complete result; else readies it for the tasks.

    Readying clears it (``overwrite``) or checks that an interrupted run there
    had the same plan, then writes the plan record and the zstd dictionaries.

    Raises:
        ValueError: ``dest`` holds foreign files, another dataset, or another run's work.
    """
    dest, record = plan.dest, plan.to_json()
    work = dest / WORK_DIR
    foreign = sorted(p.name for p in dest.iterdir() if p.name not in _OURS)
    if foreign:
        raise ValueError(
            f"`dest` {dest} holds files that are not a dataset ({foreign[:3]}); choose an empty "
            "or new directory"
        )
    if overwrite:
        _clear(dest)
    elif (dest / MANIFEST_NAME).exists():
        found = read_manifest(dest)
        same = (found.num_rows == record["limit"]
                and [c.to_json() for c in found.schema] == record["schema"]
                and [list(k) for k in found.next_from_row] == record["next_from_row"])
        if not same:
            raise ValueError(
                f"`dest` {dest} holds a dataset of {found.num_rows} rows with another schema or "
                f"size than this run ({record['limit']} rows); pass overwrite=True to replace it"
            )
        shutil.rmtree(work, ignore_errors=True)
        return True
    elif (work / PLAN_NAME).exists():
        old = loads_json(read_inside(dest, work / PLAN_NAME).decode("utf-8"))
        if old != record:
            raise ValueError(
                f"`dest` {dest} holds an interrupted run over another source, row limit or output "
                "schema; pass overwrite=True to discard it"
            )
        logger.info("%s: resuming an interrupted run", dest)
    dataset_dir(dest, WORK_DIR)
    dataset_dir(dest, "shards")
    atomic_write_bytes(dest / INCOMPLETE_NAME, _RESUME_HINT.encode("utf-8"))
    atomic_write_json(work / PLAN_NAME, record)
    fsync_dir(dest)
    for key, data in plan.dictionaries.items():
        write_dictionary(dest, key, data)
    return False


def finish_dest(plan: RunPlan, records: list[dict]) -> None:
    """Copies the episode table and event logs, commits the manifest, then removes the run's work files.

    Args:
        plan: the run's plan.
        records: the record of each task, in task order (``run_tasks``'s result).
    """
    root, dest, m, num_eps = plan.root, plan.dest, plan.source_manifest, plan.num_episodes
    tmp = dest / WORK_DIR / EPISODES_NAME
    table = EpisodeTable.from_dataset(root, m.episodes)
    try:
        table.copy_to(tmp, num_eps, has_final=[e for r in records for e in r["final_episodes"]])
    finally:
        table.close()
    os.replace(tmp, dest / EPISODES_NAME)
    dataset_dir(dest, "events")
    logs, crcs = [], []
    for rel in m.event_logs:
        crc = filter_event_log(root / rel, dest / rel, plan.limit, root=root)
        if crc is not None:
            logs.append(rel)
            crcs.append(crc)
    fsync_dir(dest / "events")
    copied = EpisodeTable.from_dataset(dest, EPISODES_NAME)
    try:
        episodes_crc = copied.content_crc(num_eps)
    finally:
        copied.close()
    fn = plan.fn
    manifest = Manifest(
        schema=plan.schema,
        next_from_row=list(plan.next_keys),
        shards=[ShardInfo(**r["shard"]) for r in records],
        num_rows=plan.limit,
        num_episodes=num_eps,
        event_logs=logs,
        event_log_crcs=crcs,
        episodes_crc=episodes_crc,
        next_shard_id=len(plan.tasks),
        shard_rows=m.shard_rows,
        source={"kind": "preprocess", "source": ShardCache.read_marker(root) or str(root),
                "fn": getattr(fn, "__qualname__", type(fn).__qualname__), "parent": m.source},
    )
    write_manifest(dest, manifest)
    listed = {Path(t.name) for t in plan.tasks}
    for d in (dest / "shards").iterdir():  # pieces of an earlier, differently split run
        if Path(d.name) not in listed:
            shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(dest / WORK_DIR, ignore_errors=True)
    (dest / INCOMPLETE_NAME).unlink(missing_ok=True)


def staging_dest(url: str, source: Any) -> tuple[str, Path]:
    """A ``dest`` URL, normalised, and the local directory the run writes before :func:`publish` pushes it.

    Raises:
        ValueError: ``url`` is not a valid URL, or it is the source's URL or lies under it.
    """
    parsed = parse_url(url, "dest")
    root = getattr(source, "root", source)
    if is_remote(root):
        src = parse_url(root, "source").url
    else:
        src = ShardCache.read_marker(Path(os.path.expanduser(root))) if isinstance(root, (str, os.PathLike)) else None
    if src is not None and parsed.url.startswith(src):
        raise ValueError(f"`dest` {parsed.url} is the source {src} or lies under it; choose another prefix")
    return parsed.url, default_cache_dir() / "push" / hashlib.sha256(parsed.url.encode()).hexdigest()[:16]


def publish(local: Path, url: str, *, progress: bool) -> ShardedStorage:
    """Pushes the finished dataset at ``local`` to ``url`` (``dataset.json`` last), removes ``local`` and
    returns the storage reading ``url`` through the cache."""
    result = push(local, url, progress=progress)
    logger.info("pushed %s to %s: %d objects uploaded (%d bytes), %d already there", local, result.url,
                result.uploaded, result.bytes_uploaded, result.skipped)
    shutil.rmtree(local)
    return ShardedStorage(result.url)
