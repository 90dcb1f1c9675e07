"""The directory of a new dataset: which names are a dataset's, and making room for one.

A dataset directory holds only the dataset's own files: the manifest, the
episode table (``episodes.sqlite``, or ``episodes.<hex>.sqlite`` after a
rewrite), ``shards/``, ``events/``, the compression dictionaries and the
writer lock. ``ShardWriter.create`` refuses a directory with anything else in
it, so that ``overwrite=True`` never deletes a file the library did not write.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..format import DICT_DIR, EPISODES_NAME, MANIFEST_NAME, dataset_dir
from .lock import LOCK_NAME, lock_dataset, unlock_dataset

__all__ = ["DATASET_NAMES", "is_dataset_name", "prepare_new_dataset", "remove_dataset"]

DATASET_NAMES = frozenset({MANIFEST_NAME, EPISODES_NAME, LOCK_NAME, DICT_DIR, "shards", "events"})


def is_dataset_name(name: str) -> bool:
    """A name a dataset directory holds (including a rewritten episode table, ``episodes.<hex>.sqlite``).

    Example:
        >>> is_dataset_name("shards"), is_dataset_name("episodes.1a2b.sqlite"), is_dataset_name("notes.txt")
        (True, True, False)
    """
    return name in DATASET_NAMES or (name.startswith("episodes.") and name.endswith(".sqlite"))


def remove_dataset(root: Path) -> None:
    """Deletes the files of the dataset at ``root`` (manifest first, so it stops being one at once)."""
    lock_fd = lock_dataset(root, "another ShardWriter holds this dataset; close it before overwriting")
    try:
        (root / MANIFEST_NAME).unlink()
        for p in root.iterdir():
            if p.name != LOCK_NAME and is_dataset_name(p.name):
                p.unlink() if p.is_symlink() or not p.is_dir() else shutil.rmtree(p)  # a link, never its target
    finally:
        unlock_dataset(root, lock_fd)


def prepare_new_dataset(root: Path, overwrite: bool) -> None:
    """Makes ``root`` ready for a new dataset: ``shards/`` and ``events/`` exist, no manifest does.

    A manifest left half-written by a create that was killed is removed; with
    ``overwrite``, so is a dataset already there.

    Raises:
        FileExistsError: when ``root`` holds files that are not a dataset's, or
            a dataset and ``overwrite`` is false.
    """
    leftover: list[Path] = []
    if root.is_dir():
        leftover = [p for p in root.glob(f".{MANIFEST_NAME}.*.tmp") if p.is_file()]  # a create killed mid-write
        unrelated = sorted(p.name for p in root.iterdir() if not is_dataset_name(p.name) and p not in leftover)
        if unrelated:
            raise FileExistsError(
                f"{root}: the directory holds other files ({', '.join(unrelated[:5])}); "
                "choose an empty or new directory for a dataset"
            )
    if overwrite and (root / MANIFEST_NAME).exists():
        remove_dataset(root)
    if (root / MANIFEST_NAME).exists():
        raise FileExistsError(
            f"{root}: a dataset already exists here; use ShardWriter.open(root) to append, "
            "ShardWriter.create(root, overwrite=True) to replace it, or choose another directory"
        )
    for p in leftover:
        p.unlink()
    root.mkdir(parents=True, exist_ok=True)
    dataset_dir(root, "shards")
    dataset_dir(root, "events")
