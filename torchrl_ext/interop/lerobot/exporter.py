"""``export_lerobot``: a dataset or view as a LeRobot v3.0 dataset that ``LeRobotDataset(repo_id, root=out_dir)`` opens.

What is written (:mod:`.layout` is the spec): one data parquet, one mp4 per
camera (:mod:`.video_writer`), the episode table, the task table, ``info.json``
and ``stats.json`` (:mod:`.tables`), all under ``chunk-000/file-000``.

Features: what :func:`~torchrl_ext.interop.lerobot.lerobot_features` finds
(an imported dataset's own features under their LeRobot names; otherwise every
stored column, nested keys joined by dots, TED's ``next/reward`` and
``next/done`` as ``next.reward`` and ``next.done``), or those named by
``keys``. uint8 ``[H, W, 3]`` columns become videos; other columns must hold
a scalar or a vector per frame. Rows keep their order; episodes are numbered
from 0 in the source's order; ``timestamp`` is ``frame_index / fps``. Tasks:
the imported ``task_index`` with its texts, else the episode metadata
``task``, else ``task``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ...export.selection import episodes_of
from ...progress import ProgressBar
from ...validation import user_path
from .frames import lerobot_features
from .importer import SOURCE_FORMAT
from .layout import (
    CODEBASE_VERSION,
    DATA_PATH,
    EPISODES_PATH,
    INFO_PATH,
    TASKS_PATH,
    VIDEO_PATH,
    load_pyarrow,
)
from .tables import (
    Stats,
    data_table,
    episodes_table,
    write_stats,
    write_table,
    write_tasks,
)
from .video_writer import Mp4Episodes

__all__ = ["export_lerobot"]

logger = logging.getLogger(__name__)

_OWN = ("timestamp", "frame_index", "episode_index", "index", "task_index")
_FILE = {"chunk_index": 0, "file_index": 0}
_DEFAULT_FEATURES = {"timestamp": "float32", "frame_index": "int64", "episode_index": "int64", "index": "int64",
                     "task_index": "int64"}


def _plan(storage: Any, keys: Any) -> dict[str, tuple[tuple[str, ...], str, tuple[int, ...]]]:
    feats = {n: f for n, f in lerobot_features(storage.manifest).items() if n not in _OWN}
    if keys is not None:
        wanted = [".".join(k.split("/") if isinstance(k, str) else k) for k in keys]  # LeRobot names
        unknown = [k for k in wanted if k not in feats]
        if unknown:
            raise ValueError(f"`keys` names {unknown}, not columns of {storage.root}; columns are {sorted(feats)}")
        feats = {k: feats[k] for k in wanted}
    columns = {c.key: c for c in storage.manifest.schema}
    bad = []
    for name, (key, dtype, shape) in feats.items():
        col = columns.get(key)
        if dtype in ("video", "image"):
            if col is None or col.dtype != np.uint8 or tuple(col.shape)[2:] != (3,) or len(col.shape) != 3:
                bad.append(name)
        elif len(shape) != 1:
            bad.append(name)
    if bad:
        raise ValueError(f"columns {bad} are neither uint8 [H, W, 3] frames nor one number or vector per frame; "
                         "leave them out with `keys=` (LeRobot features are scalars, vectors or frames)")
    if not feats:
        raise ValueError(f"{storage.root}: no column to export; `keys` must name at least one")
    return feats


def _tasks(storage: Any, ids: np.ndarray, default: str) -> tuple[list[str] | None, list[str]]:
    """``(texts by stored task_index or None, the task of each episode)``."""
    src = storage.manifest.source or {}
    stored = src.get("tasks") if src.get("format") == SOURCE_FORMAT else None
    if stored and any(c.key == ("task_index",) for c in storage.manifest.schema):
        return list(stored), []
    table = storage.episode_table()
    try:
        if "task" in table.metadata_columns():
            per = [r[0] for r in table.values(["task"], ids.tolist())]
            return None, [t if isinstance(t, str) else default for t in per]
    finally:
        table.close()
    return None, [default] * len(ids)


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ValueError(f"`out_dir` {out_dir} exists and is not an empty directory; choose a new directory or "
                         "delete it")
    out_dir.mkdir(parents=True, exist_ok=True)


def export_lerobot(source: Any, out_dir: str | os.PathLike, *, fps: int | None = None, keys: Any = None,
                   task: str = "", crf: int = 0, gop: int = 2, robot_type: str | None = None,
                   progress: bool = True) -> Path:
    """Writes the episodes of ``source`` as a LeRobot v3.0 dataset in ``out_dir``.

    Args:
        source: dataset directory, :class:`~torchrl_ext.ShardedStorage` or
            :class:`~torchrl_ext.storages.EpisodeView` (only its episodes).
        out_dir: a new (or empty) directory; open it with ``LeRobotDataset(repo_id, root=out_dir)``
            under any ``repo_id`` (LeRobot's files do not record one).
        fps: frames per second (default: the fps an import recorded).
        keys: the columns to export (LeRobot names or nested keys; default: all, see the module).
        task: the task text of episodes without ``task`` metadata.
        crf: 0 codes frames losslessly (LeRobot decodes them exactly); 1..51 is libx264's lossy quality.
        gop: frames between key frames of the videos.
        robot_type: ``info.json``'s ``robot_type`` (default: the imported one).
        progress: show a progress bar (frames).

    Returns:
        ``out_dir``.

    Raises:
        ValueError: ``out_dir`` holds files, an unknown key or a column LeRobot cannot hold, no fps.
    """
    storage, ids = episodes_of(source)
    out = user_path(out_dir, "out_dir")
    src = storage.manifest.source or {}
    imported = src.get("format") == SOURCE_FORMAT
    fps = fps if fps is not None else src.get("fps") if imported else None
    if isinstance(fps, bool) or not isinstance(fps, int) or fps <= 0:
        raise ValueError(f"`fps` must be a positive int (the dataset records none), got {fps!r}")
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
        raise ValueError(f"`crf` must be an int in [0, 51], got {crf!r}")
    if isinstance(gop, bool) or not isinstance(gop, int) or gop < 1:
        raise ValueError(f"`gop` must be a positive int, got {gop!r}")
    feats = _plan(storage, keys)
    texts, per_episode = _tasks(storage, ids, task)
    _check_out_dir(out)
    writer = _Writer(out, storage, feats, fps, crf, gop)
    first, length = storage.episode_bounds
    total = int(length[ids].sum()) if len(ids) else 0
    with ProgressBar("export lerobot", total, unit="frame", enabled=progress) as bar:
        for k, e in enumerate(ids.tolist()):
            rows = np.arange(int(first[e]), int(first[e] + length[e]), dtype=np.int64)
            writer.episode(k, rows, per_episode[k] if per_episode else None, texts)
            bar.update(len(rows))
    writer.close(robot_type if robot_type is not None else src.get("robot_type") if imported else None)
    logger.info("%s: %d episodes, %d frames as a LeRobot %s dataset", out, len(ids), total, CODEBASE_VERSION)
    return out


class _Writer:
    """The files of the export, episode by episode."""

    def __init__(self, out: Path, storage: Any, feats: dict, fps: int, crf: int, gop: int) -> None:
        self.out, self.storage, self.feats, self.fps, self.crf, self.gop = out, storage, feats, fps, crf, gop
        self.videos = {n: None for n, (_, d, _) in feats.items() if d in ("video", "image")}
        self.stats = Stats()
        self.tasks: list[str] = []
        self.episodes: list[dict[str, Any]] = []
        self.frames = 0
        self.data_writer: Any = None
        self.names = {n: src.get("names") for n, src in ((storage.manifest.source or {}).get("features") or {}).items()
                      if isinstance(src, dict)}

    def _task_index(self, text: str) -> int:
        if text not in self.tasks:
            self.tasks.append(text)
        return self.tasks.index(text)

    def episode(self, k: int, rows: np.ndarray, task: str | None, texts: list[str] | None) -> None:
        n = len(rows)
        keys = [key for key, _, _ in self.feats.values()] + ([("task_index",)] if texts is not None else [])
        got = self.storage.reader.gather(rows, keys=keys)
        if texts is not None:  # the stored task_index mapped to this export's numbering of the texts
            stored, inverse = np.unique(got[("task_index",)], return_inverse=True)
            task_index = np.asarray([self._task_index(texts[int(i)]) for i in stored], np.int64)[inverse]
        else:
            task_index = np.full(n, self._task_index(task), np.int64)
        columns: dict[str, tuple[np.ndarray, tuple[int, ...]]] = {}
        row: dict[str, Any] = {"episode_index": k, "tasks": [self.tasks[i] for i in dict.fromkeys(task_index.tolist())],
                               "length": n, "data/chunk_index": 0, "data/file_index": 0,
                               "dataset_from_index": self.frames, "dataset_to_index": self.frames + n}
        for name, (key, dtype, shape) in self.feats.items():
            values = got[key]
            if name in self.videos:
                video = self.videos[name]
                if video is None:
                    path = self.out / VIDEO_PATH.format(video_key=name, **_FILE)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    video = self.videos[name] = Mp4Episodes(path, self.fps, values.shape[1], values.shape[2],
                                                            crf=self.crf, gop=self.gop)
                a, b = video.add_episode(values)
                row.update({f"videos/{name}/chunk_index": 0, f"videos/{name}/file_index": 0,
                            f"videos/{name}/from_timestamp": a, f"videos/{name}/to_timestamp": b})
                self.stats.add(name, values, frames=True)
                continue
            columns[name] = (values.astype(dtype, copy=False), shape)
            self.stats.add(name, values)
        own = {"timestamp": (np.arange(n) / self.fps).astype(np.float32), "frame_index": np.arange(n),
               "episode_index": np.full(n, k), "index": self.frames + np.arange(n), "task_index": task_index}
        for name, values in own.items():
            columns[name] = (values.astype(_DEFAULT_FEATURES[name], copy=False), (1,))
            self.stats.add(name, values)
        table = data_table(columns)
        if self.data_writer is None:
            pa = load_pyarrow()
            path = self.out / DATA_PATH.format(**_FILE)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.data_writer = pa.parquet.ParquetWriter(str(path), table.schema, compression="snappy")
        self.data_writer.write_table(table)
        row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
        self.episodes.append(row)
        self.frames += n

    def _info(self, robot_type: str | None) -> dict[str, Any]:
        features: dict[str, Any] = {}
        for name, (key, dtype, shape) in self.feats.items():
            if name in self.videos:
                video = self.videos[name]
                h, w = (video.stream.height, video.stream.width) if video else (0, 0)
                features[name] = {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
                                  "info": {"video.height": h, "video.width": w, "video.codec": "h264",
                                           "video.pix_fmt": video.stored_pix_fmt if video else None,
                                           "video.is_depth_map": False, "video.fps": self.fps, "video.channels": 3,
                                           "has_audio": False}}
            else:
                features[name] = {"dtype": dtype, "shape": list(shape), "names": self.names.get(name)}
        for name, dtype in _DEFAULT_FEATURES.items():
            features[name] = {"dtype": dtype, "shape": [1], "names": None}
        return {"codebase_version": CODEBASE_VERSION, "robot_type": robot_type, "total_episodes": len(self.episodes),
                "total_frames": self.frames, "total_tasks": len(self.tasks), "chunks_size": 1000,
                "data_files_size_in_mb": 100, "video_files_size_in_mb": 200, "fps": self.fps,
                "splits": {"train": f"0:{len(self.episodes)}"}, "data_path": DATA_PATH,
                "video_path": VIDEO_PATH if self.videos else None, "features": features}

    def close(self, robot_type: str | None) -> None:
        from ...format.files import atomic_write_json

        if self.data_writer is not None:
            self.data_writer.close()
        for video in self.videos.values():
            if video is not None:
                video.close()
        if self.episodes:
            write_table(episodes_table(self.episodes), self.out / EPISODES_PATH.format(**_FILE))
        write_tasks(self.tasks, self.out / TASKS_PATH)
        write_stats(self.stats, self.out / "meta" / "stats.json")
        atomic_write_json(self.out / INFO_PATH, self._info(robot_type), indent=4)
