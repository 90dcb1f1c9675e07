"""A MineStudio 1.1.6 dataset directory: its modalities, episodes and events, as MineStudio's readers see them.

Episodes follow ``minestudio/data/minecraft/core.py`` (``KernelManager``):
each modality merges the episodes of all its parts; the dataset's episodes
are those present in every modality read, with the same number of frames in
each, in sorted name order. Events follow
``minestudio/data/minecraft/tools/event_convertion.py``: the ``event``
environment holds ``__event_info__`` (``{name: {"__num_items__": n, ...}}``),
an optional ``__codebook__`` (``{episode name: code}``) and, for item ``i``
of event ``name``, ``str((name, i))`` -> ``(episode or code, frame, value)``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...format import FormatError
from ...sources.safe_pickle import safe_loads
from ...validation import user_path
from .lmdb_parts import PartInfo, chunk_key, open_env, read_part, read_value

__all__ = ["MODALITY_DIRS", "EVENT_DIR", "EpisodeRef", "MineStudioLayout"]

logger = logging.getLogger(__name__)

# modality -> folder names MineStudio's kernels accept for it (``filter_dataset_paths``)
MODALITY_DIRS: dict[str, tuple[str, ...]] = {
    "image": ("image", "video"),
    "action": ("action",),
    "meta_info": ("meta_info", "contractor_info"),
    "segment": ("segment", "segmentation"),
}
EVENT_DIR = "event"


@dataclass(frozen=True)
class EpisodeRef:
    """One episode of a dataset directory: its name, frames and where each modality keeps it."""

    name: str
    num_frames: int
    parts: dict[str, tuple[PartInfo, int]] = field(hash=False)


class MineStudioLayout:
    """The modalities, episodes and events of one MineStudio dataset directory (read-only).

    Args:
        dataset_dir: the directory holding ``image/``, ``action/``, ... .
        modalities: the modalities that must be present; their episodes are
            intersected. Others found are ignored.

    Raises:
        FormatError: a required modality is missing, parts disagree on the
            chunk size, or a part is damaged.
    """

    def __init__(self, dataset_dir: str | os.PathLike, modalities: Sequence[str] = ("image", "action")) -> None:
        self.dir = user_path(dataset_dir, "dataset_dir")
        if not self.dir.is_dir():
            raise FileNotFoundError(f"{self.dir}: no such directory; expected a MineStudio dataset directory")
        unknown = sorted(set(modalities) - set(MODALITY_DIRS))
        if unknown:
            raise ValueError(f"`modalities` names {unknown}; known modalities are {sorted(MODALITY_DIRS)}")
        self.parts: dict[str, list[PartInfo]] = {}
        for modality in modalities:
            folder = self.modality_dir(modality)
            if folder is None:
                found = sorted(p.name for p in self.dir.iterdir() if p.is_dir())
                raise FormatError(
                    f"{self.dir}: modality {modality!r} is missing: expected a folder named one of "
                    f"{MODALITY_DIRS[modality]}, found {found}; convert it with MineStudio's tools or leave it out"
                )
            parts = sorted(p for p in folder.iterdir() if p.is_dir())
            if not parts:
                raise FormatError(f"{folder}: no LMDB part inside; expected part-*/ environments")
            self.parts[modality] = [read_part(p) for p in parts]
        sizes = {p.chunk_size for ps in self.parts.values() for p in ps}
        if len(sizes) != 1:
            raise FormatError(f"{self.dir}: parts use different chunk sizes {sorted(sizes)}; expected one")
        self.chunk_size = sizes.pop()
        self.episodes, self.skipped = self._episodes()

    def modality_dir(self, modality: str) -> Path | None:
        """The folder of ``modality`` (first of its accepted names that exists), or None."""
        for name in MODALITY_DIRS[modality]:
            if (self.dir / name).is_dir():
                return self.dir / name
        return None

    def _episodes(self) -> tuple[list[EpisodeRef], dict[str, str]]:
        where: dict[str, dict[str, tuple[PartInfo, int, int]]] = {}
        for modality, parts in self.parts.items():
            seen: dict[str, tuple[PartInfo, int, int]] = {}
            for part in parts:
                for info in part.episodes:
                    seen[info.episode] = (part, info.episode_idx, info.num_frames)  # later parts win, as in MineStudio
            where[modality] = seen
        names = set.intersection(*(set(s) for s in where.values()))
        skipped = {n: "missing in " + ", ".join(m for m, s in where.items() if n not in s)
                   for n in set().union(*where.values()) - names}
        episodes = []
        for name in sorted(names):
            frames = {m: where[m][name][2] for m in where}
            if len(set(frames.values())) != 1:
                skipped[name] = f"frame counts differ between modalities: {frames}"
                continue
            n = frames.popitem()[1]
            if n == 0:
                skipped[name] = "no frames"
                continue
            episodes.append(EpisodeRef(name, n, {m: (where[m][name][0], where[m][name][1]) for m in where}))
        if skipped:
            logger.info("%s: %d episodes left out (not in every modality or lengths differ)", self.dir, len(skipped))
        return episodes, skipped

    def chunks(self, modality: str, episode: EpisodeRef) -> Iterator[bytes]:
        """The raw chunk values of ``episode`` in ``modality``, in frame order."""
        part, idx = episode.parts[modality]
        env = part.env
        for start in range(0, episode.num_frames, self.chunk_size):
            yield read_value(env, chunk_key(idx, start), f"{part.path} episode {episode.name!r}")

    def has_events(self) -> bool:
        """Whether an ``event`` environment is there (anything named ``data.mdb``: :meth:`events` refuses a non-file)."""
        return os.path.lexists(self.dir / EVENT_DIR / "data.mdb")

    def events(self) -> dict[str, list[tuple[int, str, float]]]:
        """``{episode name: [(frame, event name, value), ...]}`` from the ``event`` environment, in item order.

        Raises:
            FormatError: a missing or malformed key, or an item naming an
                episode code the codebook does not hold.
        """
        path = self.dir / EVENT_DIR
        where = str(path)
        env = open_env(path)
        info = safe_loads(read_value(env, b"__event_info__", where), f"{where} [__event_info__]")
        if not isinstance(info, dict):
            raise FormatError(f"{where}: __event_info__ must be a dict, found {type(info).__name__}")
        raw = None
        with env.begin() as txn:
            raw = txn.get(b"__codebook__")
        codebook = None
        if raw is not None:
            book = safe_loads(raw, f"{where} [__codebook__]")
            if not isinstance(book, dict) or not all(map(_is_name, [*book, *book.values()])):
                raise FormatError(f"{where}: __codebook__ must map episode names to codes (str or int), found "
                                  f"{type(book).__name__}; the environment is corrupt")
            codebook = {v: k for k, v in book.items()}
        out: dict[str, list[tuple[int, str, float]]] = {}
        if not all(isinstance(name, str) for name in info):
            raise FormatError(f"{where}: __event_info__ must be keyed by event names (str); the environment is "
                              "corrupt")
        with env.begin() as txn:
            for name in sorted(info):
                meta = info[name]
                n = meta.get("__num_items__") if isinstance(meta, dict) else None
                if not isinstance(n, int) or n < 0:
                    raise FormatError(f"{where}: __event_info__[{name!r:.80}] has no valid '__num_items__' "
                                      f"(an int >= 0), found {type(n).__name__}")
                for i in range(n):
                    key = str((name, i)).encode()
                    value = txn.get(key)
                    if value is None:
                        raise FormatError(f"{where}: event item {key.decode()!r} is missing; the environment is incomplete")
                    item = safe_loads(value, f"{where} [{key.decode()}]")
                    if not (isinstance(item, tuple) and len(item) == 3 and _is_name(item[0])
                            and isinstance(item[1], (int, np.integer)) and 0 <= item[1] < _MAX_FRAME
                            and isinstance(item[2], (int, float, np.integer, np.floating))):
                        raise FormatError(f"{where}: event item {key.decode()!r} must be (episode name or code, frame "
                                          f"0..{_MAX_FRAME - 1}, number), found {item!r:.120}")
                    episode, frame, val = item
                    if codebook is not None:
                        if episode not in codebook:
                            raise FormatError(f"{where}: event item {key.decode()!r} names episode code {episode!r}, "
                                              "which __codebook__ does not hold")
                        episode = codebook[episode]
                    out.setdefault(str(episode), []).append((int(frame), str(name), float(val)))
        return out


_MAX_FRAME = 1 << 40


def _is_name(value: Any) -> bool:
    """An episode name or codebook code: a str or an int (never a container)."""
    return isinstance(value, (str, int, np.integer)) and not isinstance(value, bool)
