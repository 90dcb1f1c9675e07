"""Small datasets in MineStudio 1.1.6's on-disk layout, for docs, tests and benchmarks.

Mirrors what ``minestudio/data/minecraft/tools/convertion.py`` (``ConvertWorker.run``,
``ConvertManager.dispatch``), the ``Image``/``Action``/``MetaInfoConvertCallback``
and ``tools/event_convertion.py`` write (specified in :mod:`.lmdb_parts` and
:mod:`.layout`), and optionally what ``SegmentationConvertCallback`` writes
(:mod:`.segments`): one LMDB environment per part named ``part-<episodes so far>``,
chunk keys ``str((episode_idx, chunk_start))``, pickled metadata and chunks,
one mp4 (h264, PyAV's default encoder settings) per image chunk, and the event
environment built from meta_info's per-frame ``events``, with a codebook.

Frames carry their identity: :func:`stamp` draws a 16-bit code
(``episode * 1024 + t``) as 8x8 black/white blocks in the top 16 rows, so a
decoded frame tells which frame it is (:func:`read_stamp`); the rest of the
frame moves so that the encoder uses B-frames. Segmentation interactions
(:func:`interactions_of`) last 6-39 frames, some overlapping and some apart,
and each frame's mask is a rectangle of its own (:func:`segment_mask`).
"""

from __future__ import annotations

import io
import os
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ...validation import user_path
from .segments import MASK_SHAPE, rle_encode

__all__ = ["BUTTONS", "EVENTS", "SEGMENT_EVENTS", "stamp", "read_stamp", "mp4_chunk", "actions_of", "events_of",
           "meta_of", "interactions_of", "segment_mask", "segments_of", "write_events", "write_minestudio_dataset"]

BUTTONS = ("attack", "back", "forward", "jump", "left", "right", "sneak", "sprint", "use", "drop", "inventory",
           *(f"hotbar.{i}" for i in range(1, 10)))
EVENTS = ("minecraft.mine_block:minecraft.dirt", "minecraft.kill_entity:minecraft.cow", "minecraft.craft_item:stick")
SEGMENT_EVENTS = ("minecraft.mine_block:minecraft.dirt", "minecraft.kill_entity:minecraft.cow",
                  "minecraft.use_item:minecraft.bucket")
_SEGMENT_TEXT = ("mine dirt", "kill cow", "use bucket")


def stamp(episode: int, t: int, h: int, w: int) -> np.ndarray:
    """Frame ``t`` of ``episode``: its 16-bit code as 8x8 blocks in the top 16 rows, moving colours below."""
    code = episode * 1024 + t
    yy, xx = np.mgrid[0:h, 0:w]
    frame = np.empty((h, w, 3), np.uint8)
    frame[..., 0] = (xx * 3 + t * 5) % 256
    frame[..., 1] = (yy * 2 + t * 3) % 256
    frame[..., 2] = 128
    for bit in range(16):
        r, c = divmod(bit, 8)
        frame[r * 8:(r + 1) * 8, c * 8:(c + 1) * 8] = 235 if (code >> bit) & 1 else 16
    return frame


def read_stamp(frame: np.ndarray) -> int:
    """The code :func:`stamp` drew into a (decoded) frame."""
    code = 0
    for bit in range(16):
        r, c = divmod(bit, 8)
        if frame[r * 8 + 2:(r + 1) * 8 - 2, c * 8 + 2:(c + 1) * 8 - 2].mean() > 128:
            code |= 1 << bit
    return code


def mp4_chunk(frames: list[np.ndarray], fps: int = 20, codec: str = "h264") -> bytes:
    """``ImageConvertCallback._write_video_chunk``: one mp4 file of the frames."""
    import av

    out = io.BytesIO()
    container = av.open(out, mode="w", format="mp4")
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
    for frame in frames:
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return out.getvalue()


def actions_of(episode: int, n: int) -> dict[str, np.ndarray]:
    """Env actions of an episode as contractor action pickles hold them (int64 buttons, float64 camera)."""
    rng = np.random.default_rng(episode)
    out = {b: (rng.random(n) < 0.25).astype(np.int64) for b in BUTTONS}
    out["inventory"] = (rng.random(n) < 0.03).astype(np.int64)
    out["camera"] = np.round(rng.normal(0, 6, (n, 2)) * (rng.random((n, 1)) < 0.5), 3)
    out["swapHands"] = np.zeros(n, np.int64)
    return out


def events_of(episode: int, t: int) -> dict[str, float]:
    """The meta_info ``events`` dict of frame ``t``."""
    out = {}
    if t % 37 == 5 + episode:
        out[EVENTS[0]] = 1.0
    if t % 50 == 30:
        out[EVENTS[1]] = 2.0
    if t in (140, 150, 250):
        out[EVENTS[2]] = 1.0
    return out


def meta_of(episode: int, t: int) -> dict[str, Any]:
    """The meta_info record of frame ``t`` (numbers, a bool, a str and dicts)."""
    return {"pitch": float(t % 90) - 45.0, "yaw": 0.5 * t, "isGuiOpen": bool(t % 7 == 0), "tick": t,
            "player_name": f"p{episode}", "events": events_of(episode, t), "inventory": {"dirt": t // 10}}


def interactions_of(episode: int, n: int) -> list[tuple[int, int, int]]:
    """``(first, last, obj_id)`` of an episode's interactions; odd episodes have none in frames 96-191."""
    rng = np.random.default_rng(7000 + episode)
    out: list[tuple[int, int, int]] = []
    t = int(rng.integers(0, 12))
    while t < n:
        length = int(rng.integers(6, 40))
        last = min(t + length - 1, n - 1)
        if not (episode % 2 and t < 192 and last >= 96):
            out.append((t, last, (episode + len(out)) % 7))
        t = max(t + 1, t + length + int(rng.integers(-12, 16)))
    return out


def segment_mask(episode: int, interaction: int, t: int) -> np.ndarray:
    """The 360x640 mask of interaction ``interaction`` at frame ``t``: a rectangle placed by all three."""
    i = interaction + 5 * episode
    mask = np.zeros(MASK_SHAPE, np.uint8)
    y, x = (29 * i + 3 * t) % 300, (41 * i + 7 * t) % 560
    mask[y:y + 10 + (7 * i + t) % 50, x:x + 10 + (13 * i + 2 * t) % 80] = 1
    if interaction % 4 == 0:
        mask[-1, -1] = 1  # a run that ends at the last pixel
    return mask


def segments_of(episode: int, n: int) -> list[dict[tuple[int, str], dict[str, Any]]]:
    """``SegmentationConvertCallback.do_convert``'s per-frame dicts of an episode (every frame kept).

    Interactions of a frame come in order of their last frame, latest first.
    """
    out: list[dict[tuple[int, str], dict[str, Any]]] = [{} for _ in range(n)]
    spans = interactions_of(episode, n)
    for i in sorted(range(len(spans)), key=lambda i: -spans[i][1]):
        first, last, obj_id = spans[i]
        for t in range(first, last + 1):
            mask = segment_mask(episode, i, t)
            ys, xs = np.nonzero(mask[:-1, :-1])
            point = None if i % 5 == 3 else (int(ys.mean()), int(xs.mean()))
            out[t][(i, SEGMENT_EVENTS[i % 3])] = {
                "obj_id": obj_id, "rle_mask": rle_encode(mask), "event": _SEGMENT_TEXT[i % 3], "point": point,
                "ori_frame_id": t, "ori_frame_range": (first, last), "frame_id": t, "frame_range": (first, last)}
    return out


def _write_part(path: Path, episodes: list[tuple[str, int, int]], chunk_size: int, values: Any) -> None:
    import lmdb

    path.mkdir(parents=True)
    env = lmdb.open(str(path), map_size=1 << 30)
    infos, total = [], 0
    for idx, (name, e, n) in enumerate(episodes):
        for start, val in values(e, n):
            with env.begin(write=True) as txn:
                txn.put(str((idx, start)).encode(), val)
        infos.append({"episode": name, "episode_idx": idx, "num_frames": n})
        total += n
    meta = {"__chunk_size__": chunk_size, "__chunk_infos__": infos, "__num_episodes__": len(episodes),
            "__num_total_frames__": total}
    with env.begin(write=True) as txn:
        for k, v in meta.items():
            txn.put(k.encode(), pickle.dumps(v))
    env.close()


def write_events(root: Path, episodes: list[tuple[str, int, int]]) -> None:
    """``event_convertion.py``: events of meta_info's ``events`` field, sorted episodes, a codebook."""
    events: dict[str, dict[str, list]] = {}
    for name, e, n in sorted(episodes):
        for t in range(n):
            for ev, value in events_of(e, t).items():
                events.setdefault(ev, {}).setdefault(name, []).append((t, value))
    data = {"__num__events__": len(events), "__event_info__": {}}
    for ev, items in events.items():
        data["__event_info__"][ev] = {"__num_episodes__": len(items), "__num_items__": sum(map(len, items.values()))}
    codebook = {}
    for ev, items in events.items():
        i = 0
        for eps, lst in items.items():
            codebook.setdefault(eps, f"{len(codebook)}")
            for t, value in lst:
                data[str((ev, i))] = (codebook[eps], t, value)
                i += 1
    data["__codebook__"] = codebook
    import lmdb

    path = root / "event"
    path.mkdir(parents=True)
    with lmdb.open(str(path), map_size=1 << 30) as env, env.begin(write=True) as txn:
        for k, v in data.items():
            txn.put(k.encode(), pickle.dumps(v))


def write_minestudio_dataset(root: str | os.PathLike, lengths: tuple[int, ...] = (288, 192, 320), *,
                             chunk_size: int = 32, size: tuple[int, int] = (64, 64), episodes_per_part: int = 2,
                             names: list[str] | None = None, codec: str = "h264", events: bool = True,
                             meta: bool = True, segment: str | None = None) -> list[tuple[str, int, int]]:
    """Writes a small dataset in MineStudio 1.1.6's layout at ``root`` (which must not exist).

    Args:
        root: the new dataset directory.
        lengths: frames of each episode, multiples of ``chunk_size``.
        chunk_size: frames per chunk.
        size: ``(height, width)`` of the frames.
        episodes_per_part: episodes per LMDB part.
        names: episode names (default ``player<e>-<1000 + 7e>``).
        codec: the mp4 chunks' codec (``"h264"`` as MineStudio writes them).
        events: write the ``event`` environment.
        meta: write ``meta_info``.
        segment: also write segmentation (:func:`segments_of`) into a folder
            of this name (``"segment"`` or ``"segmentation"``).

    Returns:
        ``(name, episode number, frames)`` per episode, in part order.

    Raises:
        ValueError: a length that is not a positive multiple of ``chunk_size``.
        FileExistsError: ``root`` exists.
    """
    root = user_path(root, "root")
    if any(n <= 0 or n % chunk_size for n in lengths):
        raise ValueError(f"`lengths` must be positive multiples of `chunk_size` {chunk_size}, got {lengths}")
    if root.exists():
        raise FileExistsError(f"{root}: exists; choose a new directory for the dataset")
    h, w = size
    names = names or [f"player{e}-{1000 + 7 * e}" for e in range(len(lengths))]
    episodes = [(names[e], e, n) for e, n in enumerate(lengths)]

    def images(e: int, n: int) -> Any:
        for s in range(0, n, chunk_size):
            yield s, mp4_chunk([stamp(e, t, h, w) for t in range(s, s + chunk_size)], codec=codec)

    def actions(e: int, n: int) -> Any:
        a = actions_of(e, n)
        for s in range(0, n, chunk_size):
            yield s, pickle.dumps({k: v[s:s + chunk_size] for k, v in a.items()})

    def metas(e: int, n: int) -> Any:
        for s in range(0, n, chunk_size):
            yield s, pickle.dumps([meta_of(e, t) for t in range(s, s + chunk_size)])

    modalities = OrderedDict(image=images, action=actions)
    if meta:
        modalities["meta_info"] = metas
    if segment is not None:
        if segment not in ("segment", "segmentation"):
            raise ValueError(f"`segment` must be 'segment', 'segmentation' or None, got {segment!r}")

        def segments(e: int, n: int) -> Any:
            frames = segments_of(e, n)
            for s in range(0, n, chunk_size):
                yield s, pickle.dumps(frames[s:s + chunk_size])

        modalities[segment] = segments
    for modality, values in modalities.items():
        for first in range(0, len(episodes), episodes_per_part):
            part = episodes[first:first + episodes_per_part]
            _write_part(root / modality / f"part-{first + len(part)}", part, chunk_size, values)
    if events:
        write_events(root, episodes)
    return episodes
