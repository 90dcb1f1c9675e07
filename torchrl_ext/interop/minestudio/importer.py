"""MineStudio 1.1.6 dataset directories -> one sharded dataset, streamed one episode at a time.

Each MineStudio episode becomes one episode: ``image`` (uint8 ``[H, W, 3]``,
a ``video`` column whose chunks are MineStudio's own h264 GOPs when they
allow it, :mod:`.video_chunks`), ``action/<key>`` as MineStudio stores the env
action (``attack``, ``camera`` ``[2]``, ``hotbar.1``...), ``meta_info/<field>``
for the numeric meta_info fields, zero rewards and ``done``/``truncated`` at
the last frame. Events come from the ``event`` environment (or, without one,
from meta_info's per-frame ``events`` dicts, as ``event_convertion.py`` does)
with MineStudio's names; the episode table holds MineStudio's episode
``name``, its ``dataset_dir``, ``part`` and ``episode_idx``. A segmentation
modality, when imported, becomes the ``segment/...`` columns of
:mod:`.segments` (the masks as packed bits in lossless zstd chunks aligned
with the image chunks) and the episode's ``segment_events`` metadata.

Order and resuming: directories in the order given, episodes in MineStudio's
order (sorted names). A dataset holding ``M`` committed episodes of the same
import holds the first ``M`` of that order, so an interrupted import is
resumed by running it again: it skips those and appends the rest. Every
episode starts a new shard, so the shards an interrupted episode leaves are
dropped whole and no committed frame is ever decoded and encoded again.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...format import MANIFEST_NAME, FormatError, read_manifest
from ...progress import ProgressBar
from ...validation import user_path
from .layout import EpisodeRef, MineStudioLayout
from .lmdb_parts import close_envs
from .records import (
    action_columns,
    meta_columns,
    meta_events,
    meta_records,
    numeric_fields,
)
from .segments import BITS_SHAPE, EVENTS_FIELD, segment_episode
from .video_chunks import (
    NotPassthrough,
    check_decodes,
    decode_mp4,
    mp4_to_payload,
    probe_mp4,
)

__all__ = ["IMPORTER_VERSION", "ImportStats", "import_minestudio", "separate_roots"]

logger = logging.getLogger(__name__)

IMPORTER_VERSION = 1
SOURCE_FORMAT = "minestudio"
PASSTHROUGH_PIX_FMTS = ("yuv420p", "yuv444p")


@dataclass
class ImportStats:
    """What :func:`import_minestudio` did.

    Attributes:
        root: the dataset written.
        episodes: episodes imported by this call.
        kept: episodes already in ``root`` from an earlier, interrupted call.
        left_out: episodes MineStudio's readers would not read either (not in
            every modality, or frame counts that differ).
        frames: frames imported by this call.
        passthrough_chunks: image chunks stored as they are; ``checked_chunks``: those decoded once to check them.
        reencoded_chunks: image chunks decoded and encoded again.
        events: events written; ``dropped_events``: events of episodes left out or past an episode's end.
        segment_frames: frames with an interaction (segmentation imported);
            ``segment_picks``: frames holding several, where one was picked.
        bytes_read: bytes of LMDB values read.
        seconds: wall time.
        reasons: why chunks were encoded again (reason -> chunks).
    """

    root: Path
    episodes: int = 0
    kept: int = 0
    left_out: int = 0
    frames: int = 0
    passthrough_chunks: int = 0
    checked_chunks: int = 0
    reencoded_chunks: int = 0
    events: int = 0
    dropped_events: int = 0
    segment_frames: int = 0
    segment_picks: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)


def separate_roots(dataset_dirs: Sequence[str | os.PathLike], root: str | os.PathLike) -> list[Path]:
    """One dataset root per directory under ``root``, named after it (``root/<name>``, ``root/<name>-2``...)."""
    out, seen = [], set()
    for d in dataset_dirs:
        name = user_path(d, "dataset_dirs").resolve().name or "dataset"
        cand, k = name, 2
        while cand in seen:
            cand, k = f"{name}-{k}", k + 1
        seen.add(cand)
        out.append(user_path(root, "root") / cand)
    return out


def _source(dirs: list[Path], modalities: tuple[str, ...], chunk_size: int) -> dict[str, Any]:
    out = {"format": SOURCE_FORMAT, "minestudio_version": "1.1.6", "importer_version": IMPORTER_VERSION,
           "dataset_dirs": [str(d) for d in dirs], "modalities": list(modalities)}
    if "segment" in modalities:  # items rebuild MineStudio's chunk reads of segmentation
        out["chunk_size"] = chunk_size
    return out


def _modalities(dirs: list[Path], modalities: Sequence[str] | None) -> tuple[str, ...]:
    if modalities is not None:
        mods = tuple(modalities)
        if "image" not in mods:
            raise ValueError(f"`modalities` must include 'image', got {mods}")
        return mods
    probe = [MineStudioLayout(d, ("image",)) for d in dirs]
    has = [m for m in ("action", "meta_info", "segment") if all(p.modality_dir(m) is not None for p in probe)]
    return ("image", *has)


class _Importer:
    """Writes the episodes of one layout; ``shape`` and ``options`` describe the image column."""

    def __init__(self, writer: Any, layout: MineStudioLayout, stats: ImportStats, *, shape: tuple[int, ...],
                 options: Any, passthrough: bool, meta_fields: dict[str, np.dtype] | None,
                 meta_names: Sequence[str] | None, mask_options: Any = None,
                 check_decode: bool = True) -> None:
        self.writer, self.layout, self.stats = writer, layout, stats
        self.shape, self.options = shape, options
        self.passthrough, self.check_decode = passthrough and options.codec == "h264", check_decode
        self.meta_fields = meta_fields
        self.meta_names = meta_names
        self.events = layout.events() if layout.has_events() else None
        if self.events is not None:  # events of episodes MineStudio's readers leave out too
            names = {ep.name for ep in layout.episodes}
            stats.dropped_events += sum(len(v) for k, v in self.events.items() if k not in names)
        self._codec: Any = None
        self._mask_codec: Any = None
        self.mask_options = mask_options

    def _read(self, n: int) -> None:
        self.stats.bytes_read += n

    def _chunks(self, modality: str, ep: EpisodeRef):
        for raw in self.layout.chunks(modality, ep):
            self._read(len(raw))
            yield raw

    def _payload(self, raw: bytes, where: str, source: str) -> bytes:
        from ...encodings import load_codec
        from ...encodings.video_codec import pack_packets

        cs = self.layout.chunk_size
        if self.passthrough:
            try:
                packets, params = mp4_to_payload(raw, cs, where)
                if (params.height, params.width, 3) != self.shape:
                    raise NotPassthrough(f"frames of {params.height}x{params.width}, the column's are {self.shape[:2]}")
                if self.check_decode:  # before anything of the episode is handed to the writer
                    check_decodes(packets, cs, source)
                    self.stats.checked_chunks += 1
                self.stats.passthrough_chunks += 1
                return pack_packets(packets)
            except NotPassthrough as why:
                self.stats.reasons[str(why)] = self.stats.reasons.get(str(why), 0) + 1
        frames = decode_mp4(raw, where, cs)
        if frames.shape[1:] != self.shape:
            raise FormatError(f"{where}: frames of shape {frames.shape[1:]}, the dataset's image column is "
                              f"{self.shape}; import directories of one frame size into one dataset")
        if self._codec is None:
            self._codec = load_codec(self.options, np.uint8, self.shape)
        self.stats.reencoded_chunks += 1
        return self._codec.encode(frames)

    def episode(self, ep: EpisodeRef) -> None:
        from ...encodings import EncodedChunks

        where = f"{self.layout.dir} episode {ep.name!r}"
        n = ep.num_frames
        done = np.zeros((n, 1), bool)
        done[-1] = True
        td: dict[str, Any] = {"next": {"reward": np.zeros((n, 1), np.float32), "done": done,
                                       "terminated": np.zeros((n, 1), bool), "truncated": done.copy()}}
        if "action" in ep.parts:
            td["action"] = action_columns(self._chunks("action", ep), n, where)
        events = None
        if "meta_info" in ep.parts:
            records = meta_records(self._chunks("meta_info", ep), n, where)
            if self.meta_fields is None:
                self.meta_fields = numeric_fields(records, self.meta_names)
            if self.meta_fields:
                td["meta_info"] = meta_columns(records, self.meta_fields, where)
            if self.events is None:
                events = meta_events(records)
        if events is None:
            events = (self.events or {}).get(ep.name, [])
        kept = [(t, name, v) for t, name, v in events if 0 <= t < n]
        self.stats.dropped_events += len(events) - len(kept)
        cs = self.layout.chunk_size
        src = ep.parts["image"][0].path / "data.mdb"
        payloads = tuple(self._payload(raw, f"{where} image chunk {c}", f"{src} episode {ep.name!r} image chunk {c} "
                                       f"(frames {c * cs}-{c * cs + cs - 1})")
                         for c, raw in enumerate(self._chunks("image", ep)))
        image = EncodedChunks(payloads, (cs,) * len(payloads), np.uint8, self.shape, self.options.codec_tag)
        part, idx = ep.parts["image"]
        metadata = {"name": ep.name, "dataset_dir": str(self.layout.dir), "part": part.path.name, "episode_idx": idx}
        encoded = {"image": image}
        if "segment" in ep.parts:
            td["segment"], encoded[("segment", "mask_bits")], metadata[EVENTS_FIELD] = self._segment(ep, where)
        try:
            self.writer.add_episode(td, metadata, kept, encoded=encoded)
        except (ValueError, TypeError) as err:
            raise FormatError(f"{where}: does not fit the episodes imported before it ({err})") from err
        self.stats.episodes += 1
        self.stats.frames += n
        self.stats.events += len(kept)

    def _segment(self, ep: EpisodeRef, where: str) -> tuple[dict[str, np.ndarray], Any, str]:
        from ...encodings import EncodedChunks, load_codec

        if self._mask_codec is None:
            self._mask_codec = load_codec(self.mask_options, np.uint8, BITS_SHAPE)
        cs = self.layout.chunk_size
        seg = segment_episode(self._chunks("segment", ep), ep.num_frames, cs, self._mask_codec, where)
        self.stats.segment_frames += seg.with_interaction
        self.stats.segment_picks += seg.picked
        mask = EncodedChunks(seg.mask_chunks, (cs,) * len(seg.mask_chunks), np.uint8, BITS_SHAPE,
                             self.mask_options.codec_tag)
        return seg.columns, mask, json.dumps(seg.events)


def _image_column(root: Path, layout: MineStudioLayout, crf: int, preset: str) -> tuple[tuple[int, ...], Any]:
    """``(shape, Video options)`` of the image column: from the dataset when it has one, else from the first chunk."""
    from ...encodings import Video, column_options

    if (root / MANIFEST_NAME).exists():
        m = read_manifest(root)
        cols = {c.key: c for c in m.schema}
        if ("image",) in cols:
            return tuple(cols[("image",)].shape), column_options(cols[("image",)])
    if not layout.episodes:
        raise FormatError(f"{layout.dir}: no episode is present in every modality; nothing to import")
    ep = layout.episodes[0]
    first = next(iter(layout.chunks("image", ep)))
    params = probe_mp4(first, f"{layout.dir} episode {ep.name!r} image chunk 0")
    pix = params.pix_fmt if params.pix_fmt in PASSTHROUGH_PIX_FMTS else "yuv420p"
    if pix == "yuv420p" and (params.height % 2 or params.width % 2):
        pix = "yuv444p"
    options = Video(codec="h264", gop=layout.chunk_size, pix_fmt=pix, crf=crf, preset=preset)
    return (params.height, params.width, 3), options


def import_minestudio(
    dataset_dirs: str | os.PathLike | Sequence[str | os.PathLike],
    root: str | os.PathLike,
    *,
    modalities: Sequence[str] | None = None,
    meta_fields: Sequence[str] | None = None,
    shard_rows: int | None = None,
    passthrough: bool = True,
    check_decode: bool = True,
    crf: int = 20,
    preset: str = "veryfast",
    build_index: bool = True,
    progress: bool = True,
) -> ImportStats:
    """Imports MineStudio 1.1.6 dataset directories into one dataset at ``root`` (resumed when it exists).

    Args:
        dataset_dirs: one directory or several, each holding ``image/``,
            ``action/``, ``meta_info/``, ``segment/`` and ``event/`` as
            MineStudio's conversion tools write them; imported in this order.
        root: the dataset to write (created, or resumed when it holds this
            same import).
        modalities: modalities whose episodes are imported, ``"image"`` first;
            default: image plus each of action, meta_info and segment that
            every directory has. Episodes are those present in all of them with the
            same frame count, as MineStudio's ``KernelManager`` reads them.
        meta_fields: meta_info fields to store (default: every field holding
            a number or bool in the first frame).
        shard_rows: rows per shard, a multiple of the chunk size (default:
            128 chunks).
        passthrough: store h264 chunks as they are (False: decode and encode
            every chunk again with ``crf`` and ``preset``).
        check_decode: decode each chunk stored as it is once, strictly, before its episode is
            written: MineStudio's chunks carry no checksum (:func:`.video_chunks.check_decodes`).
        crf, preset: the h264 settings of chunks that are encoded again.
        build_index: build and save the event index at the end.
        progress: show a progress bar (frames imported, episodes beside them).

    Returns:
        What was imported.

    Raises:
        FormatError: a damaged or inconsistent MineStudio directory.
        ValueError: ``root`` holds another dataset, or bad arguments.

    Example:
        >>> import tempfile; from torchrl_ext.interop.minestudio import write_minestudio_dataset
        >>> work = tempfile.mkdtemp(); _ = write_minestudio_dataset(f"{work}/ms", lengths=(32, 64))  # its layout
        >>> stats = import_minestudio([f"{work}/ms"], f"{work}/ds", progress=False); stats.episodes, stats.frames
        (2, 96)
    """
    try:
        return _import(dataset_dirs, root, modalities, meta_fields, shard_rows, passthrough, crf, preset,
                       build_index, progress, check_decode)
    finally:
        close_envs()


def _import(dataset_dirs, root, modalities, meta_fields, shard_rows, passthrough, crf, preset, build_index,
            progress, check_decode) -> ImportStats:
    from ...encodings import Zstd
    from ...writer import ShardWriter

    t0 = time.perf_counter()
    if isinstance(dataset_dirs, (str, os.PathLike)):
        dataset_dirs = [dataset_dirs]
    dirs = [user_path(d, "dataset_dirs").resolve() for d in dataset_dirs]
    if not dirs:
        raise ValueError("`dataset_dirs` must name at least one MineStudio dataset directory, got none")
    root = user_path(root, "root")
    mods = _modalities(dirs, modalities)
    layouts = [MineStudioLayout(d, mods) for d in dirs]
    cs = layouts[0].chunk_size
    if any(lay.chunk_size != cs for lay in layouts):
        raise FormatError(f"the directories use chunk sizes {[lay.chunk_size for lay in layouts]}; import them "
                          "into separate datasets")
    if shard_rows is None:
        shard_rows = 128 * cs
    if type(shard_rows) is not int or shard_rows <= 0 or shard_rows % cs:
        raise ValueError(f"`shard_rows` must be a positive multiple of the chunk size {cs}, got {shard_rows!r}")
    source = _source(dirs, mods, cs)
    stats = ImportStats(root=root, left_out=sum(len(lay.skipped) for lay in layouts))
    shape, options = _image_column(root, layouts[0], crf, preset)
    mask_options = Zstd(chunk_rows=cs)  # one mask chunk per image chunk; the level leaves the format alone
    names = None if meta_fields is None else list(meta_fields)
    fields = None
    if (root / MANIFEST_NAME).exists():
        m = read_manifest(root)
        if m.source != source:
            raise ValueError(f"{root}: holds another dataset (source {m.source}); expected the import of "
                             f"{[str(d) for d in dirs]}; choose another root or delete it")
        writer = ShardWriter.open(root)
        stored = {c.key[1]: np.dtype(c.dtype) for c in m.schema if c.key[0] == "meta_info" and len(c.key) == 2}
        if m.schema:
            fields = stored
    else:
        encodings = {"image": options}
        if "segment" in mods:
            encodings["segment", "mask_bits"] = mask_options
        writer = ShardWriter.create(root, shard_rows=shard_rows, source=source, encodings=encodings)
    episodes = [ep for lay in layouts for ep in lay.episodes]  # the order of the import
    bar = ProgressBar("import minestudio", sum(ep.num_frames for ep in episodes), unit="frame",
                      initial=sum(ep.num_frames for ep in episodes[:writer.num_episodes]), enabled=progress)
    completed = False
    try:
        stats.kept = skip = writer.num_episodes
        total = len(episodes)
        for lay in layouts:
            todo = lay.episodes[skip:]
            skip = max(0, skip - len(lay.episodes))
            if not todo:
                continue
            imp = _Importer(writer, lay, stats, shape=shape, options=options, passthrough=passthrough,
                            meta_fields=fields, meta_names=names, mask_options=mask_options,
                            check_decode=check_decode)
            for ep in todo:
                imp.episode(ep)
                fields = imp.meta_fields
                bar.update(ep.num_frames, episodes=f"{stats.kept + stats.episodes}/{total}")
        writer.close()
        completed = True
    finally:
        bar.close(completed=completed)
        writer.close()
    if build_index and (stats.episodes or not (root / "events" / "index").exists()):
        from ...events import EventIndex

        EventIndex.build(root)
    stats.seconds = time.perf_counter() - t0
    logger.info("%s: imported %d episodes (%d kept), %d chunks passed through, %d encoded again", root,
                stats.episodes, stats.kept, stats.passthrough_chunks, stats.reencoded_chunks)
    return stats
