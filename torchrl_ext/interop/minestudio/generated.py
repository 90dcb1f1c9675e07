"""Episodes written by MineStudio's ``MineGenerator`` workers -> one sharded dataset.

``minestudio/inference/generator/mine_generator.py`` (1.1.6) saves, per
episode of ``T`` actions (ids are ``uuid4`` strings, no rewards or done flags):

``info_<id>.pkl``
    pickled list of ``T + 1`` info dicts (the reset's, then one per step),
    ``pov`` removed, mapping-like values turned into dicts;
``action_<id>.pkl``
    pickled list of ``T`` actions (dicts of tensors or arrays);
``video_<id>.mp4`` or ``images_<id>/<i>.jpeg``
    the ``T + 1`` frames (h264 at 30 fps, or one JPEG per frame).

Each becomes one episode of ``T`` rows: ``image`` (frame ``t``; ``("next",
"image")`` is frame ``t + 1``), ``action/<key>``, ``info/<field>`` for the
numeric top-level info fields, zero rewards and ``done``/``truncated`` at the
last step. Nested info dicts of numbers are cumulative counters (``mine_block``,
``craft_item``...): a positive change between info ``t`` and ``t + 1`` is an
event ``"<group>:<item>"`` at step ``t`` (the step whose action caused it),
with the change as its value. Pickles load through the restricted unpickler
(tensors included). Every file must be a regular file: a FIFO named like an
episode file is refused at once instead of blocking the import. Episodes are
imported in sorted id order; running the import again resumes it.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...format import MANIFEST_NAME, FormatError, open_regular, read_manifest
from ...sources.safe_pickle import safe_load
from ...validation import user_path
from .records import meta_columns, numeric_fields
from .video_chunks import decode_mp4

__all__ = ["GeneratedImportStats", "import_generated_episodes", "generated_episode_ids", "counter_events"]

logger = logging.getLogger(__name__)

SOURCE_FORMAT = "minestudio-generated"
_ID = re.compile(r"^action_(.+)\.pkl$")


@dataclass
class GeneratedImportStats:
    """What :func:`import_generated_episodes` did (episodes and steps of this call, episodes kept from before)."""

    root: Path
    episodes: int = 0
    kept: int = 0
    steps: int = 0
    events: int = 0
    seconds: float = 0.0


def generated_episode_ids(directory: str | os.PathLike) -> list[str]:
    """Ids of the episodes in ``directory`` (those with an ``action_<id>.pkl``), sorted."""
    return sorted(m.group(1) for p in user_path(directory, "directory").iterdir() if (m := _ID.match(p.name)))


def _array(value: Any, where: str) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise FormatError(f"{where}: expected numbers, found dtype {arr.dtype}")
    return arr


def _read(path: Path) -> bytes:
    """A file's bytes; a FIFO, device or directory under the name is refused at once (FormatError), never read."""
    with open_regular(path) as f:
        return f.read()


def _load(path: Path) -> Any:
    try:
        with open_regular(path) as f:
            return safe_load(f, str(path))
    except FileNotFoundError:
        raise FormatError(f"{path}: missing; every generated episode has info_, action_ and video_ or images_ "
                          "files") from None


def _actions(actions: Any, where: str) -> dict[str, np.ndarray]:
    if not isinstance(actions, list) or not actions or not all(isinstance(a, Mapping) for a in actions):
        raise FormatError(f"{where}: expected a non-empty list of action dicts, found {type(actions).__name__}")
    keys = list(actions[0])
    try:
        return {str(k): np.stack([_array(a[k], f"{where} step {t} {k!r}") for t, a in enumerate(actions)])
                for k in keys}
    except (KeyError, ValueError) as err:
        raise FormatError(f"{where}: actions do not share keys and shapes ({err})") from err


def counter_events(infos: Sequence[Mapping[str, Any]], groups: Sequence[str] | None = None
                   ) -> list[tuple[int, str, float]]:
    """``(step, "<group>:<item>", increase)`` for counters that grow between info ``step`` and ``step + 1``.

    >>> infos = [{"mine_block": {}}, {"mine_block": {"dirt": 1}}, {"mine_block": {"dirt": 1}}]
    >>> counter_events(infos)
    [(0, 'mine_block:dirt', 1.0)]
    """
    def counters(info: Mapping[str, Any]) -> dict[str, float]:
        out = {}
        for group, value in info.items():
            if isinstance(value, Mapping) and (groups is None or group in groups):
                for item, v in value.items():
                    if isinstance(v, (int, float, np.number)) and not isinstance(v, bool):
                        out[f"{group}:{item}"] = float(v)
        return out

    events = []
    prev = counters(infos[0]) if infos else {}
    for t in range(1, len(infos)):
        cur = counters(infos[t])
        for name, v in cur.items():
            delta = v - prev.get(name, 0.0)
            if delta > 0:
                events.append((t - 1, name, delta))
        prev = cur
    return events


def _frames(directory: Path, eid: str, where: str) -> np.ndarray:
    video = directory / f"video_{eid}.mp4"
    if video.exists():
        return decode_mp4(_read(video), str(video))
    images = directory / f"images_{eid}"
    if not images.is_dir():
        raise FormatError(f"{where}: neither video_{eid}.mp4 nor images_{eid}/ exists")
    import cv2

    files = sorted((p for p in images.iterdir() if p.suffix == ".jpeg"), key=lambda p: int(p.stem))
    out = []
    for p in files:
        img = cv2.imdecode(np.frombuffer(_read(p), np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise FormatError(f"{p}: not a readable JPEG")
        out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    if not out:
        raise FormatError(f"{images}: holds no <i>.jpeg frame")
    return np.stack(out)


def import_generated_episodes(
    directory: str | os.PathLike,
    root: str | os.PathLike,
    *,
    encoding: Any = "video",
    counters: Sequence[str] | None = None,
    info_fields: Sequence[str] | None = None,
    shard_rows: int | None = None,
    build_index: bool = True,
    progress: bool = True,
) -> GeneratedImportStats:
    """Imports the episodes MineGenerator workers wrote into ``directory`` (resumed when ``root`` holds them).

    Args:
        directory: the workers' ``tmpdir``.
        root: the dataset to write.
        encoding: encoding of the ``image`` column (``"video"``: h264 GOPs of
            32 frames, ``"zstd"``, ``"raw"`` or an option object).
        counters: info groups whose items are counters (default: every
            nested dict of numbers).
        info_fields: info fields stored as columns (default: every top-level
            number or bool of the first info).
        shard_rows: rows per shard (default: 256 MiB of raw rows).
        build_index: build and save the event index at the end.
        progress: show a progress bar in episodes.

    Raises:
        FormatError: a missing or damaged file, or frame/action/info counts that disagree.
        ValueError: ``root`` holds another dataset.
    """
    from ...writer import ShardWriter

    t0 = time.perf_counter()
    directory = user_path(directory, "directory").resolve()
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such directory; expected MineGenerator's episode files")
    root = user_path(root, "root")
    ids = generated_episode_ids(directory)
    source = {"format": SOURCE_FORMAT, "minestudio_version": "1.1.6", "directory": str(directory)}
    stats = GeneratedImportStats(root)
    fields = None
    if (root / MANIFEST_NAME).exists():
        m = read_manifest(root)
        if m.source != source:
            raise ValueError(f"{root}: holds another dataset (source {m.source}); choose another root")
        writer = ShardWriter.open(root)
        if m.schema:
            fields = {c.key[1]: np.dtype(c.dtype) for c in m.schema if c.key[0] == "info" and len(c.key) == 2}
    else:
        encodings = {} if encoding in (None, "raw") else {"image": encoding}
        writer = ShardWriter.create(root, shard_rows=shard_rows, source=source, encodings=encodings)
    bar = None
    try:
        stats.kept = writer.num_episodes
        todo = ids[stats.kept:]
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(ids), initial=stats.kept, unit="episode", desc="generated episodes")
        for eid in todo:
            where = f"{directory} episode {eid}"
            actions = _actions(_load(directory / f"action_{eid}.pkl"), where)
            infos = _load(directory / f"info_{eid}.pkl")
            if not isinstance(infos, list) or not all(isinstance(i, Mapping) for i in infos):
                raise FormatError(f"{where}: info_{eid}.pkl must hold a list of dicts")
            frames = _frames(directory, eid, where)
            n = len(next(iter(actions.values())))
            if len(infos) != n + 1 or len(frames) != n + 1:
                raise FormatError(f"{where}: {n} actions need {n + 1} infos and frames, found {len(infos)} infos "
                                  f"and {len(frames)} frames")
            if fields is None:
                fields = numeric_fields(infos, info_fields)
            done = np.zeros((n, 1), bool)
            done[-1] = True
            td: dict[str, Any] = {"image": frames[:n], "action": actions,
                                  "next": {"image": frames[1:], "reward": np.zeros((n, 1), np.float32),
                                           "done": done, "terminated": np.zeros((n, 1), bool),
                                           "truncated": done.copy()}}
            if fields:
                td["info"] = meta_columns(infos[:n], fields, where)
            events = counter_events(infos, counters)
            media = "h264" if (directory / f"video_{eid}.mp4").exists() else "jpeg"
            try:
                writer.add_episode(td, {"name": eid, "media": media}, events)
            except (ValueError, TypeError) as err:
                raise FormatError(f"{where}: does not fit the episodes imported before it ({err})") from err
            stats.episodes += 1
            stats.steps += n
            stats.events += len(events)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        writer.close()
    if build_index and (stats.episodes or not (root / "events" / "index").exists()):
        from ...events import EventIndex

        EventIndex.build(root)
    stats.seconds = time.perf_counter() - t0
    logger.info("%s: imported %d generated episodes (%d kept)", root, stats.episodes, stats.kept)
    return stats
