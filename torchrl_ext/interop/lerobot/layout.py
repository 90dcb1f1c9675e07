"""LeRobot's on-disk v3.0 layout, as ``lerobot==0.4.x`` writes it, read as data (no ``lerobot`` import).

A dataset directory holds::

    meta/info.json                      codebase_version "v3.0", fps, features, totals, path templates
    meta/tasks.parquet                  one row per task: its text (the pandas index) and task_index
    meta/episodes/chunk-CCC/file-FFF.parquet
                                        one row per episode, in episode order: episode_index, tasks
                                        (list of text), length, data/chunk_index, data/file_index,
                                        dataset_from_index, dataset_to_index (global rows [from, to)),
                                        and per video key videos/<key>/chunk_index, file_index,
                                        from_timestamp, to_timestamp (the episode's seconds in that file);
                                        stats/... columns, not read here
    data/chunk-CCC/file-FFF.parquet     the frames of several episodes: one column per non-video
                                        feature plus timestamp, frame_index, episode_index, index, task_index
    videos/<key>/chunk-CCC/file-FFF.mp4 the frames of several episodes of one camera, concatenated:
                                        frame t of an episode is shown at from_timestamp + timestamp[t]

A feature is ``{"dtype", "shape", "names"}``: dtype ``video`` or ``image``
(frames ``[H, W, C]``), ``string``, or a numeric type; shape ``[1]`` is a scalar
column. Feature names with dots are nested keys here (``observation.images.top``
-> ``("observation", "images", "top")``).

Everything comes from elsewhere, so it is checked before use: ``info.json``
size-capped and typed, the version exactly ``v3.0``, the path templates
LeRobot's own (so a path is built from integers and checked feature names
only), the episode rows contiguous and in order, and every file opened inside
the dataset directory as a regular file (:func:`torchrl_ext.format.files.open_inside`).
Each failure is one :class:`~torchrl_ext.format.FormatError` naming the file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...format import FormatError
from ...format.files import inside_root, open_inside, read_json_object

__all__ = [
    "CODEBASE_VERSION",
    "DATA_PATH",
    "DEFAULT_FEATURES",
    "EPISODES_PATH",
    "INFO_PATH",
    "TASKS_PATH",
    "VIDEO_PATH",
    "EpisodeRef",
    "Feature",
    "LeRobotLayout",
    "VideoSpan",
    "feature_key",
    "load_pyarrow",
]

CODEBASE_VERSION = "v3.0"
INFO_PATH = "meta/info.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
CHUNK_FILE = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DATA_PATH = "data/" + CHUNK_FILE + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE + ".mp4"
EPISODES_PATH = EPISODES_DIR + "/" + CHUNK_FILE + ".parquet"
DEFAULT_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")
NUMERIC = ("bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64")
MAX_JSON_BYTES = 4 << 20
MAX_FILE_INDEX = 1 << 20
_NAME = re.compile(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*")
_FIX = "the dataset is damaged or not written by LeRobot; download it again"


def load_pyarrow() -> Any:
    """``pyarrow`` with its parquet module (ImportError naming the extra when missing)."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as err:
        raise ImportError(f"LeRobot datasets need pyarrow ({err}); pip install torchrl-ext[lerobot]") from err
    return pyarrow


def feature_key(name: str) -> tuple[str, ...]:
    """A LeRobot feature name as a nested key: ``"observation.images.top"`` -> ``("observation", "images", "top")``."""
    return tuple(name.split("."))


@dataclass(frozen=True)
class Feature:
    """One entry of ``info.json``'s ``features``: ``dtype`` (numpy name, ``video``, ``image`` or ``string``)
    and ``shape`` as LeRobot states them."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    names: Any = None

    @property
    def is_frames(self) -> bool:
        return self.dtype in ("video", "image")


@dataclass(frozen=True)
class VideoSpan:
    """Where an episode's frames of one video key are: file indices and its seconds in that file."""

    chunk_index: int
    file_index: int
    from_timestamp: float
    to_timestamp: float


@dataclass(frozen=True)
class EpisodeRef:
    """One row of ``meta/episodes``: the episode's rows ``[first_row, first_row + length)`` of its data file."""

    index: int
    length: int
    tasks: tuple[str, ...]
    data_file: tuple[int, int]
    first_row: int
    videos: dict[str, VideoSpan] = field(default_factory=dict)


def _json(root: Path, rel: str) -> dict:
    path = root / rel
    try:
        return read_json_object(root, path, max_bytes=MAX_JSON_BYTES, expected=f"LeRobot's {path.name}; {_FIX}")
    except FileNotFoundError:
        raise FormatError(f"{path}: missing; expected a LeRobot v3.0 dataset directory (meta/info.json, "
                          "meta/episodes/, data/)") from None


def _int(value: Any, where: str, lo: int = 0, hi: int = 1 << 62) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= int(value) < hi:
        raise FormatError(f"{where}: expected an int in [{lo}, {hi}), found {value!r:.60}; {_FIX}")
    return int(value)


def _feature(name: Any, spec: Any, where: str) -> Feature:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > 200:
        raise FormatError(f"{where}: feature name {name!r:.80} is not dot-separated names of letters, digits, "
                          f"'_' and '-'; {_FIX}")
    if not isinstance(spec, dict) or not isinstance(spec.get("dtype"), str):
        raise FormatError(f"{where}: feature {name!r} must be an object with a `dtype` string; {_FIX}")
    dtype = spec["dtype"]
    if dtype not in (*NUMERIC, "video", "image", "string"):
        raise FormatError(f"{where}: feature {name!r} has dtype {dtype!r:.40}; expected one of "
                          f"{[*NUMERIC, 'video', 'image', 'string']}")
    shape = spec.get("shape")
    if not isinstance(shape, list) or not 1 <= len(shape) <= 4 or not all(
            isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 1 << 16 for n in shape):
        raise FormatError(f"{where}: feature {name!r} has shape {shape!r:.60}; expected 1 to 4 positive ints")
    if dtype in ("video", "image") and (len(shape) != 3 or shape[2] not in ((3,) if dtype == "video" else (1, 3))):
        raise FormatError(f"{where}: feature {name!r} ({dtype}) has shape {shape}; expected [height, width, 3]")
    return Feature(name, dtype, tuple(shape), spec.get("names"))


class LeRobotLayout:
    """The checked metadata of the LeRobot v3.0 dataset at ``root``: features, fps, tasks and episodes.

    Raises:
        FormatError: a missing, malformed or inconsistent file (named), or another codebase version.
        ImportError: pyarrow is missing.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FormatError(f"{self.root}: not a directory; expected a LeRobot v3.0 dataset directory")
        self.info = _json(self.root, INFO_PATH)
        where = str(self.root / INFO_PATH)
        version = self.info.get("codebase_version")
        if version != CODEBASE_VERSION:
            raise FormatError(f"{where}: codebase_version {version!r:.40}, this reader expects {CODEBASE_VERSION!r}; "
                              "convert the dataset with LeRobot's convert_dataset_v21_to_v30 script first")
        fps = self.info.get("fps")
        if isinstance(fps, float) and fps.is_integer():
            fps = int(fps)
        self.fps = _int(fps, f"{where}: `fps`", 1, 100_000)
        features = self.info.get("features")
        if not isinstance(features, dict) or not features:
            raise FormatError(f"{where}: `features` must be a non-empty object; {_FIX}")
        self.features = {n: _feature(n, s, where) for n, s in features.items()}
        for path_key, expected in (("data_path", DATA_PATH), ("video_path", VIDEO_PATH)):
            found = self.info.get(path_key)
            if found != expected and not (path_key == "video_path" and found is None and not self.video_keys):
                raise FormatError(f"{where}: `{path_key}` is {found!r:.80}, expected LeRobot v3.0's {expected!r}")
        keys = [feature_key(n) for n in self.features]
        clash = sorted(".".join(k) for k in keys if any(o[:len(k)] == k and o != k for o in keys))
        if clash:
            raise FormatError(f"{where}: features {clash} are both a value and a prefix of others; rename them")
        self.tasks = self._tasks()
        self.episodes = self._episodes()

    @property
    def video_keys(self) -> list[str]:
        return [n for n, f in self.features.items() if f.dtype == "video"]

    def data_path(self, chunk_index: int, file_index: int) -> Path:
        return self.root / DATA_PATH.format(chunk_index=chunk_index, file_index=file_index)

    def video_path(self, key: str, span: VideoSpan) -> Path:
        return self.root / VIDEO_PATH.format(video_key=key, chunk_index=span.chunk_index, file_index=span.file_index)

    def read_parquet(self, path: Path, columns: list[str] | None = None) -> Any:
        """The table of ``path`` (a file of the dataset), only ``columns`` when given."""
        pa = load_pyarrow()
        try:
            with open_inside(self.root, path) as f:
                pf = pa.parquet.ParquetFile(f)
                missing = [c for c in columns or () if c not in pf.schema_arrow.names]
                if missing:
                    raise FormatError(f"{path}: has no column {missing[0]!r} (found {pf.schema_arrow.names[:12]}); "
                                      f"{_FIX}")
                return pf.read(columns=columns)
        except FileNotFoundError:
            raise FormatError(f"{path}: missing; {_FIX}") from None
        except (pa.ArrowException, OSError) as err:
            raise FormatError(f"{path}: not a readable parquet file ({type(err).__name__}: {err}); {_FIX}") from None

    def _tasks(self) -> list[str]:
        path = self.root / TASKS_PATH
        table = self.read_parquet(path)
        names = table.column_names
        text = next((c for c in ("task", "__index_level_0__") if c in names), None)
        if text is None or "task_index" not in names:
            raise FormatError(f"{path}: expected columns task_index and the task text (the pandas index), found "
                              f"{names[:8]}; {_FIX}")
        index = np.asarray(table.column("task_index").to_numpy(zero_copy_only=False))
        texts = table.column(text).to_pylist()
        if not np.array_equal(np.sort(index), np.arange(len(index))) or not all(isinstance(t, str) for t in texts):
            raise FormatError(f"{path}: task_index must number the {len(index)} task texts 0..{len(index) - 1}; "
                              f"{_FIX}")
        out = [""] * len(index)
        for i, t in zip(index.tolist(), texts):
            out[i] = t
        return out

    def episode_files(self) -> list[Path]:
        """``meta/episodes/chunk-*/file-*.parquet`` in LeRobot's order (sorted names), each inside the root."""
        base = self.root / EPISODES_DIR
        paths = sorted(base.glob("chunk-*/file-*.parquet")) if base.is_dir() else []
        if not paths:
            raise FormatError(f"{base}: holds no chunk-*/file-*.parquet; expected LeRobot v3.0 episode metadata")
        for p in paths:  # a symlinked chunk directory pointing elsewhere is refused here
            inside_root(self.root, p)
        return paths

    def _episodes(self) -> list[EpisodeRef]:
        cols = ["episode_index", "tasks", "length", "data/chunk_index", "data/file_index", "dataset_from_index",
                "dataset_to_index"]
        vcols = [f"videos/{k}/{c}" for k in self.video_keys for c in ("chunk_index", "file_index", "from_timestamp",
                                                                       "to_timestamp")]
        out: list[EpisodeRef] = []
        for path in self.episode_files():
            rows = self.read_parquet(path, cols + vcols).to_pylist()
            for row in rows:
                out.append(self._episode(row, len(out), out[-1] if out else None, path))
        total = self.info.get("total_episodes")
        if total is not None and total != len(out):
            raise FormatError(f"{self.root / INFO_PATH}: total_episodes is {total!r:.20}, meta/episodes lists "
                              f"{len(out)}; {_FIX}")
        return out

    def _episode(self, row: dict, position: int, before: EpisodeRef | None, path: Path) -> EpisodeRef:
        where = f"{path}: episode row {position}"
        index = _int(row["episode_index"], f"{where} episode_index")
        if index != position:
            raise FormatError(f"{where}: episode_index {index}, expected {position} (episodes in order from 0); "
                              f"{_FIX}")
        length = _int(row["length"], f"{where} length", 1)
        first = _int(row["dataset_from_index"], f"{where} dataset_from_index")
        stop = _int(row["dataset_to_index"], f"{where} dataset_to_index")
        expected = 0 if before is None else before.first_row + before.length
        if first != expected or stop - first != length:
            raise FormatError(f"{where}: rows [{first}, {stop}) for length {length}, expected [{expected}, "
                              f"{expected + length}) (episodes back to back); {_FIX}")
        tasks = row["tasks"]
        if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
            raise FormatError(f"{where}: `tasks` must be a list of text, found {tasks!r:.60}; {_FIX}")
        videos = {}
        for key in self.video_keys:
            c = f"videos/{key}/"
            a, b = row[c + "from_timestamp"], row[c + "to_timestamp"]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (a, b)) \
                    or not 0 <= a < b:
                raise FormatError(f"{where}: {c}from_timestamp/to_timestamp are {a!r:.20}, {b!r:.20}; expected "
                                  f"0 <= from < to; {_FIX}")
            videos[key] = VideoSpan(_int(row[c + "chunk_index"], where + " " + c + "chunk_index", 0, MAX_FILE_INDEX),
                                    _int(row[c + "file_index"], where + " " + c + "file_index", 0, MAX_FILE_INDEX),
                                    float(a), float(b))
        data_file = (_int(row["data/chunk_index"], where + " data/chunk_index", 0, MAX_FILE_INDEX),
                     _int(row["data/file_index"], where + " data/file_index", 0, MAX_FILE_INDEX))
        return EpisodeRef(index, length, tuple(tasks), data_file, first, videos)
