"""A LeRobot v3.0 dataset directory -> one sharded dataset, one episode at a time, resumable.

Each LeRobot episode of ``T`` frames becomes one episode in TorchRL's TED layout:

* every numeric feature under its nested key (``observation.state`` ->
  ``("observation", "state")``, ``action`` -> ``("action",)``), LeRobot's
  shape-``[1]`` features as ``[T]``; ``timestamp`` (float64 seconds) and
  ``task_index`` (int64) kept as columns;
* video features as ``uint8 [T, H, W, 3]`` (:mod:`.video_files`): h264 and
  AV1 (LeRobot's default codec) stored as LeRobot's own chunks when the
  column's encoding is video of the same codec (the default for an h264
  source, and for a yuv420p AV1 source when PyAV can decode AV1), else
  decoded once and stored with the column's encoding (default lossless
  ``zstd``); ``image`` features decoded the same way (:mod:`.data_files`);
* ``("next", "reward")``: LeRobot's ``next.reward`` when the dataset has it,
  else zeros; ``("next", "terminated")``: its ``next.done`` (else False; the
  feature ``next.done`` maps to this key, so LeRobot's value comes back out);
  ``("next", "truncated")``: the episode's last frame where not terminated;
  ``("next", "done")``: either (the manifest's ``source`` says which exist);
* ``("next", <observation leaf>)``: the following frame's value. LeRobot
  stores no observation after an episode's last frame, so the last frame's
  is its own, repeated: the episode's stored final observation is its last
  one (``source["final_observation"]`` says so).

Episode metadata: ``task`` (the text of the first frame's task) and
``lerobot_episode`` (LeRobot's episode_index). Events: ``task:<text>`` at step
0 and wherever the frame's task changes. The manifest's ``source`` holds
LeRobot's fps, robot_type, features (name, dtype, shape and nested key) and
task texts (by task_index), from which :class:`.frames.LeRobotFrames` and
:func:`.exporter.export_lerobot` rebuild LeRobot's items and files.

Resuming: a dataset holding ``M`` committed episodes of the same import holds
LeRobot's episodes ``0 .. M - 1``; running the import again appends the rest.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...format import MANIFEST_NAME, FormatError, Key, read_manifest
from ...progress import ProgressBar
from ...validation import user_path
from .data_files import DataFiles
from .layout import (
    CODEBASE_VERSION,
    DEFAULT_FEATURES,
    EpisodeRef,
    LeRobotLayout,
    feature_key,
)
from .video_files import probe_video, read_episode_video

__all__ = ["CHUNK_ROWS", "IMPORTER_VERSION", "SOURCE_FORMAT", "ImportStats", "column_key", "import_lerobot"]

logger = logging.getLogger(__name__)

IMPORTER_VERSION = 1
SOURCE_FORMAT = "lerobot"
CHUNK_ROWS = 32
"""Frames per chunk of a video column whose h264 or AV1 chunks are LeRobot's own (several of its short GOPs each)."""
PASSTHROUGH_PIX_FMTS = ("yuv420p", "yuv444p", "gbrp")
_FLAGS = {("next", "reward"): "float32", ("next", "done"): "bool", ("next", "terminated"): "bool",
          ("next", "truncated"): "bool"}  # TED keeps these [T, 1]


def column_key(name: str, names: Collection[str] = ()) -> Key:
    """The dataset key of a LeRobot feature: dots nest, and ``next.done`` (the task ended there) is TED's
    ``("next", "terminated")`` unless ``names`` (the dataset's features) has a ``next.terminated`` of its own."""
    if name == "next.done" and "next.terminated" not in names:
        return ("next", "terminated")
    return feature_key(name)


@dataclass
class ImportStats:
    """What :func:`import_lerobot` did.

    Attributes:
        root: the dataset written.
        episodes: episodes imported by this call; ``kept``: committed by an earlier, interrupted call.
        frames: frames imported by this call.
        passthrough_chunks: video chunks stored as LeRobot encoded them.
        decoded_episodes: (episode, camera) pairs decoded and stored with the column's encoding.
        seconds: wall time.
        reasons: why episodes were decoded (reason -> count).
    """

    root: Path
    episodes: int = 0
    kept: int = 0
    frames: int = 0
    passthrough_chunks: int = 0
    decoded_episodes: int = 0
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)


def _source(layout: LeRobotLayout, src: Path, names: list[str]) -> dict[str, Any]:
    feats = {n: {"dtype": f.dtype, "shape": list(f.shape), "key": "/".join(column_key(n, names)), "names": f.names}
             for n, f in layout.features.items() if n in names}
    return {"format": SOURCE_FORMAT, "codebase_version": CODEBASE_VERSION, "importer_version": IMPORTER_VERSION,
            "src_dir": str(src), "fps": layout.fps, "robot_type": layout.info.get("robot_type"),
            "features": feats, "tasks": list(layout.tasks),
            "reward": "next.reward" if "next.reward" in names else "zeros (the dataset has no next.reward)",
            "done": "next.done, or the episode's last frame" if "next.done" in names else
            "the last frame of each episode (truncated)",
            "final_observation": "the last frame's own (LeRobot stores no observation after an episode's last frame)"}


def _encodings(layout: LeRobotLayout, names: list[str], encodings: dict | None) -> dict[Key, Any]:
    """``{key: options}`` for ``ShardWriter.create``: the caller's (keys nested or LeRobot names) over the
    defaults (h264 and yuv420p AV1 video kept as it is, other frames lossless zstd)."""
    from ...encodings import Video, load_codec, resolve_encoding

    out: dict[Key, Any] = {}
    for name in names:
        f = layout.features[name]
        if f.dtype == "image":
            out[column_key(name)] = resolve_encoding("zstd")
        elif f.dtype == "video":
            span = layout.episodes[0].videos[name]
            info = probe_video(layout.root, layout.video_path(name, span))
            if (info.height, info.width) != f.shape[:2]:
                raise FormatError(f"{layout.video_path(name, span)}: frames of {info.height}x{info.width}, info.json "
                                  f"says {f.shape[0]}x{f.shape[1]} for {name!r}; the dataset is damaged")
            if info.codec == "h264":
                pix = info.pix_fmt if info.pix_fmt in PASSTHROUGH_PIX_FMTS else "yuv444p"
                if pix == "yuv420p" and (info.height % 2 or info.width % 2):
                    pix = "yuv444p"
                out[column_key(name)] = Video(codec="h264", gop=CHUNK_ROWS, pix_fmt=pix)
            elif info.codec == "av1" and info.pix_fmt == "yuv420p":
                out[column_key(name)] = Video(codec="av1", gop=CHUNK_ROWS)
                try:
                    load_codec(out[column_key(name)], np.uint8, f.shape)
                except ValueError as err:  # a PyAV without AV1, or odd frame sizes
                    logger.info("%s: %r is decoded into zstd (%s)", layout.root, name, err)
                    out[column_key(name)] = resolve_encoding("zstd")
            else:
                out[column_key(name)] = resolve_encoding("zstd")
    for key, spec in (encodings or {}).items():
        k = column_key(key, layout.features) if isinstance(key, str) and key in layout.features else \
            (tuple(key.split("/")) if isinstance(key, str) else tuple(key))
        out[k] = resolve_encoding(spec)
    return out


class _Episodes:
    """Builds and writes the episodes of one layout."""

    def __init__(self, layout: LeRobotLayout, writer: Any, stats: ImportStats, names: list[str]) -> None:
        from ...encodings import load_codec

        self.layout, self.writer, self.stats = layout, writer, stats
        self.data = DataFiles(layout, [n for n in names if layout.features[n].dtype != "video"])
        self.video_keys = [n for n in names if layout.features[n].dtype == "video"]
        self.options: dict[str, Any] = {}
        self.codecs: dict[str, Any] = {}
        accepted = writer.encoded_columns()  # {key: (options, dictionary)} of columns taking encoded chunks
        for name in self.video_keys:
            opts = accepted.get(column_key(name), (None, None))[0]
            self.options[name] = opts
            if getattr(opts, "name", None) == "video":
                self.codecs[name] = load_codec(opts, np.uint8, layout.features[name].shape)

    def _video(self, ep: EpisodeRef, name: str, timestamps: np.ndarray, td: dict, encoded: dict) -> np.ndarray:
        from ...encodings import EncodedChunks

        span = ep.videos[name]
        opts, codec = self.options[name], self.codecs.get(name)
        shape = self.layout.features[name].shape
        chunk_rows = getattr(opts, "chunk_rows", CHUNK_ROWS)
        got = read_episode_video(self.layout.root, self.layout.video_path(name, span), span.from_timestamp,
                                 span.to_timestamp, timestamps, codec=codec, chunk_rows=chunk_rows,
                                 where=f"episode {ep.index} {name!r}")
        key = column_key(name)
        if got.chunks is not None:
            self.stats.passthrough_chunks += len(got.chunks)
            encoded[key] = EncodedChunks(got.chunks, got.rows, np.uint8, shape, opts.codec_tag)
            return got.last
        if got.frames.shape[1:] != shape:
            raise FormatError(f"{self.layout.video_path(name, span)}: episode {ep.index} has frames of shape "
                              f"{got.frames.shape[1:]}, info.json says {shape} for {name!r}; the dataset is damaged")
        self.stats.decoded_episodes += 1
        self.stats.reasons[got.reason or "decoded"] = self.stats.reasons.get(got.reason or "decoded", 0) + 1
        frames = got.frames
        if codec is not None:  # a video column: its chunks are encoded here, as passed-through ones are
            cuts = list(range(0, len(frames), chunk_rows))
            payloads = tuple(codec.encode(frames[a:a + chunk_rows]) for a in cuts)
            encoded[key] = EncodedChunks(payloads, tuple(len(frames[a:a + chunk_rows]) for a in cuts), np.uint8,
                                         shape, opts.codec_tag)
        else:
            _put(td, key, frames)
        return got.last

    def write(self, ep: EpisodeRef) -> None:
        cols = self.data.episode(ep)
        n = ep.length
        td: dict[str, Any] = {}
        encoded: dict[Key, Any] = {}
        finals: dict[Key, np.ndarray] = {}
        for name, values in cols.items():
            if name in DEFAULT_FEATURES and name not in ("timestamp", "task_index"):
                continue
            key = column_key(name, self.layout.features)
            if key in _FLAGS:
                values = values.reshape(n, 1).astype(_FLAGS[key])
            _put(td, key, values)
        for name in self.video_keys:
            finals[column_key(name)] = self._video(ep, name, cols["timestamp"], td, encoded)
        nxt = td.setdefault("next", {})
        if "reward" not in nxt:
            nxt["reward"] = np.zeros((n, 1), np.float32)
        last = np.zeros((n, 1), bool)
        last[-1] = True
        ended = nxt.setdefault("terminated", np.zeros((n, 1), bool))  # LeRobot's next.done: the task ended there
        nxt.setdefault("truncated", last & ~ended)
        nxt.setdefault("done", ended | last)
        for key, values in _leaves(td.get("observation"), ("observation",)):
            _put(nxt, key, np.concatenate([values[1:], values[-1:]]))
        for key, frame in finals.items():  # encoded columns: only the last row of ("next", key) is read
            if key[0] == "observation":
                _put(nxt, key, np.broadcast_to(frame, (n, *frame.shape)))
        tasks = cols["task_index"]
        changes = np.flatnonzero(np.r_[True, tasks[1:] != tasks[:-1]])
        events = [(int(t), f"task:{self.layout.tasks[int(tasks[t])]}", 1.0) for t in changes]
        metadata = {"task": self.layout.tasks[int(tasks[0])], "lerobot_episode": ep.index}
        try:
            self.writer.add_episode(td, metadata, events, encoded=encoded)
        except (ValueError, TypeError) as err:
            raise FormatError(f"{self.layout.root}: episode {ep.index} does not fit the episodes before it "
                              f"({err})") from None
        self.stats.episodes += 1
        self.stats.frames += n


def _put(tree: dict, key: Key, value: Any) -> None:
    node = tree
    for part in key[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise FormatError(f"feature {'.'.join(key)!r} nests under a feature that holds values; rename one")
    node[key[-1]] = value


def _leaves(tree: Any, prefix: Key):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _leaves(v, (*prefix, k))
    elif tree is not None:
        yield prefix, tree


def _writer(root: Path, source: dict, encodings: dict, shard_rows: int | None) -> Any:
    from ...writer import ShardWriter

    if (root / MANIFEST_NAME).exists():
        manifest = read_manifest(root)
        if manifest.source != source:
            raise ValueError(f"{root}: holds another dataset (source {str(manifest.source)[:200]}); expected the "
                             f"import of {source['src_dir']}; choose another root or delete it")
        if manifest.schema:
            return ShardWriter.open(root)
    return ShardWriter.create(root, shard_rows=shard_rows, source=source, encodings=encodings, overwrite=True)


def import_lerobot(src_dir: str | os.PathLike, root: str | os.PathLike, *, encodings: dict | None = None,
                   shard_rows: int | None = None, build_index: bool = True, progress: bool = True) -> ImportStats:
    """Imports the LeRobot v3.0 dataset in ``src_dir`` into a dataset at ``root`` (resumed when it exists).

    Args:
        src_dir: a LeRobot dataset directory (``meta/info.json``, ``meta/episodes/``, ``data/``, ``videos/``),
            e.g. a local copy of a hub dataset.
        root: the dataset to write (created, or resumed when it holds this same import).
        encodings: ``{key: encoding}`` over the defaults; keys nested (``("observation", "images", "top")``,
            ``"observation/images/top"``) or LeRobot names (``"observation.images.top"``). Default: h264 and
            yuv420p AV1 videos as LeRobot's own chunks, other videos and images decoded to lossless ``"zstd"``,
            the rest raw. ``"video"`` (or ``Video(...)``) for an h264 source and ``Video(codec="av1")`` for an AV1
            one keep its chunks; a video encoding of another codec encodes again.
        shard_rows: rows per shard (default: 256 MiB of raw rows).
        build_index: build and save the event index (``task:<text>`` events) at the end.
        progress: show a progress bar (frames).

    Returns:
        What was imported; ``ShardedStorage(stats.root)`` reads it.

    Raises:
        FormatError: a malformed or inconsistent LeRobot dataset (the file is named), or not version v3.0.
        ValueError: ``root`` holds another dataset.
        ImportError: pyarrow or PyAV is missing (``pip install torchrl-ext[lerobot]``).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> import torchrl_ext
        >>> src = Path(torchrl_ext.__file__).parents[1] / "tests/interop/lerobot/fixtures/h264"  # lerobot 0.4.4's
        >>> stats = import_lerobot(src, tempfile.mkdtemp() + "/ds", progress=False)
        >>> stats.episodes, stats.frames, stats.passthrough_chunks, stats.decoded_episodes
        (3, 80, 3, 0)
    """
    t0 = time.perf_counter()
    src = user_path(src_dir, "src_dir").resolve()
    root = user_path(root, "root")
    layout = LeRobotLayout(src)
    names = [n for n, f in layout.features.items() if f.dtype != "string"
             and n not in ("frame_index", "episode_index", "index")]
    skipped = [n for n, f in layout.features.items() if f.dtype == "string"]
    if skipped:
        logger.info("%s: string features %s are not imported", src, skipped)
    source = _source(layout, src, names)
    writer = _writer(root, source, _encodings(layout, [n for n in names if n not in DEFAULT_FEATURES], encodings),
                     shard_rows)
    stats = ImportStats(root=root, kept=writer.num_episodes)
    todo = layout.episodes[writer.num_episodes:]
    bar = ProgressBar("import lerobot", sum(ep.length for ep in layout.episodes), unit="frame",
                      initial=sum(ep.length for ep in layout.episodes[:writer.num_episodes]), enabled=progress)
    with writer, bar:
        episodes = _Episodes(layout, writer, stats, [n for n in names if n not in DEFAULT_FEATURES])
        for ep in todo:
            episodes.write(ep)
            bar.update(ep.length)
    if build_index and (stats.episodes or not (root / "events" / "index").exists()):
        from ...events import EventIndex

        EventIndex.build(root)
    stats.seconds = time.perf_counter() - t0
    logger.info("%s: imported %d episodes (%d kept), %d video chunks passed through, %d episode videos decoded",
                root, stats.episodes, stats.kept, stats.passthrough_chunks, stats.decoded_episodes)
    return stats
