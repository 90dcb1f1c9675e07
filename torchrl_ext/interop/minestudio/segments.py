"""MineStudio's segmentation chunks as columns: one interaction per frame, its mask decoded once.

On disk (``SegmentationConvertCallback.do_convert`` in
``minestudio/data/minecraft/callbacks/segmentation.py``, 1.1.6): the
``segment`` (or ``segmentation``) modality has the parts and chunk keys of
every modality (:mod:`.lmdb_parts`); each chunk is a pickled list of
``chunk_size`` dicts, one per frame, ``{}`` for a frame without an
interaction, else ``{(k0, k1): interaction, ...}`` (``k1`` is the event name,
``"minecraft.mine_block:minecraft.dirt"``), each interaction a dict of

``obj_id``
    int, the interaction type (MineStudio's reader knows 0-6).
``rle_mask``
    str, the object mask of a 360x640 frame run-length encoded as
    ``"start length start length ..."``: row-major, starts counted from 1
    (``SegmentationKernelCallback.rle_encode``; :func:`rle_encode`).
``event``
    str, a description of the interaction.
``point``
    ``(y, x)`` in pixels of the 360x640 frame, or None.
``frame_id``, ``frame_range``
    int and ``(first, last)``: frames of the episode (``(-1, -1)`` when none
    is left after the converter's frame filter).
``ori_frame_id``, ``ori_frame_range``
    the same before that filter (MineStudio's reader ignores them; so does the import).

MineStudio's reader (``SegmentationKernelCallback.do_merge``) keeps one
interaction per frame: walking the frames backwards, it keeps the current
interaction while frames hold its key (frames without any interaction keep
it too) and otherwise picks one of the frame's keys with ``random.choice``.
The import walks each whole episode the same way once, picking the *first*
key of the frame; items read from these columns are always one of the
outcomes of MineStudio's random pick, and the same as MineStudio's wherever
no frame holds more than one interaction.

Columns, one row per frame (no interaction: -1, zeros, NaN):

``segment/obj_id`` int8
    the interaction's ``obj_id`` as stored (the reader's remapping is applied
    when items are read).
``segment/mask_bits`` uint8 ``[360, 80]``
    the decoded mask, 8 pixels a byte (``np.packbits(mask, axis=-1)``;
    ``np.unpackbits(bits, axis=-1)`` gives the 0/1 ``[360, 640]`` mask back),
    lossless zstd chunks aligned with the image chunks: a fraction of the
    bytes to decompress that whole masks would need.
``segment/event`` int32
    index into the episode's ``segment_events`` metadata (a JSON list of str).
``segment/point`` float64 ``[2]``
    the point as stored, NaN when absent or None.
``segment/frame_id`` int64, ``segment/frame_range`` int64 ``[2]``
    as stored.
``segment/interactions`` int16
    the interactions the frame holds (a pick was made where it is above 1).
"""

from __future__ import annotations

import numbers
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...format import FormatError
from ...format.files import loads_json
from ...sources.safe_pickle import safe_loads

__all__ = ["MASK_SHAPE", "BITS_SHAPE", "SEGMENT_KEYS", "SegmentEpisode", "rle_encode", "rle_decode", "segment_frames",
           "pick_interactions", "segment_episode", "segment_events"]

MASK_SHAPE = (360, 640)
"""``(height, width)`` MineStudio decodes every mask at, whatever the frames' size."""
BITS_SHAPE = (MASK_SHAPE[0], (MASK_SHAPE[1] + 7) // 8)
"""Row shape of ``segment/mask_bits``."""
SEGMENT_KEYS = ("obj_id", "event", "point", "frame_id", "frame_range", "interactions")
"""Columns under ``segment/`` besides ``mask_bits``."""
EVENTS_FIELD = "segment_events"
_FIELDS = ("obj_id", "rle_mask", "event", "point", "frame_id", "frame_range")
_FIX = "the segment part is damaged; re-run MineStudio's SegmentationConvertCallback for this episode"


def rle_encode(mask: np.ndarray) -> str:
    """The run-length string of a 0/1 mask (row-major, starts counted from 1).

    >>> rle_encode(np.array([[0, 1, 1], [0, 0, 1]], np.uint8))
    '2 2 6 1'
    """
    pixels = np.concatenate([[0], np.asarray(mask).reshape(-1) != 0, [0]]).astype(np.int8)
    runs = np.flatnonzero(pixels[1:] != pixels[:-1]) + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(int(x)) for x in runs)


def rle_decode(rle: str, where: str, shape: tuple[int, int] = MASK_SHAPE) -> np.ndarray:
    """The uint8 0/1 mask of a run-length string; runs past the last pixel are cut, as MineStudio cuts them.

    >>> rle_decode("2 2 6 1", "demo", (2, 3)).tolist()
    [[0, 1, 1], [0, 0, 1]]

    Raises:
        FormatError: not pairs of integers, a start below 1 or a negative length.
    """
    tokens = rle.split()
    if len(tokens) % 2:
        raise FormatError(f"{where}: rle_mask holds {len(tokens)} numbers, expected start/length pairs; {_FIX}")
    try:
        runs = np.asarray(tokens, dtype=np.int64).reshape(-1, 2)
    except (ValueError, OverflowError) as err:
        raise FormatError(f"{where}: rle_mask is not a list of integers ({err}); {_FIX}") from err
    size = shape[0] * shape[1]
    starts, lengths = runs[:, 0] - 1, runs[:, 1]
    if (starts < 0).any() or (lengths < 0).any():
        raise FormatError(f"{where}: rle_mask has a start below 1 or a negative length; {_FIX}")
    lo = np.minimum(starts, size)
    hi = np.minimum(starts + lengths, size)
    delta = np.bincount(lo, minlength=size + 1) - np.bincount(hi, minlength=size + 1)
    return (np.cumsum(delta[:size]) > 0).astype(np.uint8).reshape(shape)


def _int(value: Any, what: str, where: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise FormatError(f"{where}: {what} must be an int, found {value!r}; {_FIX}")
    return int(value)


def _check(inter: Any, where: str) -> dict[str, Any]:
    if not isinstance(inter, dict) or any(f not in inter for f in _FIELDS):
        found = sorted(map(str, inter)) if isinstance(inter, dict) else type(inter).__name__
        raise FormatError(f"{where}: an interaction must be a dict with {list(_FIELDS)}, found {found}; {_FIX}")
    obj_id = _int(inter["obj_id"], "obj_id", where)
    if not 0 <= obj_id <= 127:
        raise FormatError(f"{where}: obj_id {obj_id} is outside 0-127; {_FIX}")
    if not isinstance(inter["rle_mask"], str) or not isinstance(inter["event"], str):
        raise FormatError(f"{where}: rle_mask and event must be str, found {type(inter['rle_mask']).__name__} "
                          f"and {type(inter['event']).__name__}; {_FIX}")
    point = inter["point"]
    if point is not None:
        try:
            point = np.asarray(point, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise FormatError(f"{where}: point must be two numbers or None, found {inter['point']!r}") from err
        if point.shape != (2,):
            raise FormatError(f"{where}: point must be two numbers or None, found {inter['point']!r}; {_FIX}")
    frame_range = inter["frame_range"]
    if not isinstance(frame_range, (tuple, list, np.ndarray)) or len(frame_range) != 2:
        raise FormatError(f"{where}: frame_range must be (first, last), found {frame_range!r}; {_FIX}")
    return {"obj_id": obj_id, "rle_mask": inter["rle_mask"], "event": inter["event"], "point": point,
            "frame_id": _int(inter["frame_id"], "frame_id", where),
            "frame_range": tuple(_int(v, "frame_range", where) for v in frame_range)}


def segment_frames(chunks: Iterable[bytes], frames: int, where: str) -> list[dict[Hashable, dict[str, Any]]]:
    """The per-frame interaction dicts of an episode's segment chunks, checked (through the restricted unpickler).

    Raises:
        FormatError: a chunk that is not a list of dicts of interactions, or
            a total other than ``frames``.
    """
    out: list[dict[Hashable, dict[str, Any]]] = []
    for c, raw in enumerate(chunks):
        here = f"{where} segment chunk {c}"
        value = safe_loads(raw, here)
        if not isinstance(value, list) or not all(isinstance(f, dict) for f in value):
            raise FormatError(f"{here}: expected a list of per-frame dicts, found {type(value).__name__}; {_FIX}")
        for i, frame in enumerate(value):
            out.append({k: _check(v, f"{here} frame {i} {k!r}") for k, v in frame.items()})
    if len(out) != frames:
        raise FormatError(f"{where}: the segment modality holds {len(out)} frames, expected {frames}; {_FIX}")
    return out


def pick_interactions(frames: Sequence[dict[Hashable, Any]]) -> list[Hashable | None]:
    """The interaction key kept at each frame: MineStudio's backward walk, the first key where it picks.

    >>> pick_interactions([{"a": 0}, {"a": 0, "b": 0}, {}, {"b": 0}, {}])
    ['a', 'b', None, 'b', None]
    """
    keys: list[Hashable | None] = [None] * len(frames)
    last = None
    for t in range(len(frames) - 1, -1, -1):
        if not frames[t]:
            continue  # the current interaction carries over, as in do_merge
        if last is None or last not in frames[t]:
            last = next(iter(frames[t]))
        keys[t] = last
    return keys


@dataclass
class SegmentEpisode:
    """The segment columns of one episode: ``columns`` (all but the masks), ``events`` and the mask bits' chunks."""

    columns: dict[str, np.ndarray]
    events: list[str]
    mask_chunks: tuple[bytes, ...]
    with_interaction: int
    picked: int


def segment_episode(chunks: Iterable[bytes], frames: int, chunk_rows: int, codec: Any, where: str) -> SegmentEpisode:
    """Reads an episode's segment chunks into columns; masks are decoded and packed ``chunk_rows`` frames at a time.

    Args:
        chunks: the raw chunk values in frame order.
        frames: the episode's frames (a multiple of ``chunk_rows``).
        chunk_rows: frames per mask chunk.
        codec: the ``mask_bits`` column's codec (``encode(rows) -> bytes``).
        where: names the episode in errors.

    Raises:
        FormatError: damaged chunks or masks.
    """
    per_frame = segment_frames(chunks, frames, where)
    picks = pick_interactions(per_frame)
    obj_id = np.full(frames, -1, np.int8)
    event = np.full(frames, -1, np.int32)
    point = np.full((frames, 2), np.nan)
    frame_id = np.full(frames, -1, np.int64)
    frame_range = np.full((frames, 2), -1, np.int64)
    count = np.array([len(f) for f in per_frame], np.int16)
    vocab: dict[str, int] = {}
    for t, key in enumerate(picks):
        if key is None:
            continue
        inter = per_frame[t][key]
        obj_id[t] = inter["obj_id"]
        event[t] = vocab.setdefault(inter["event"], len(vocab))
        if inter["point"] is not None:
            point[t] = inter["point"]
        frame_id[t] = inter["frame_id"]
        frame_range[t] = inter["frame_range"]
    payloads = []
    buf = np.zeros((chunk_rows, *BITS_SHAPE), np.uint8)
    for start in range(0, frames, chunk_rows):
        buf[:] = 0
        for i in range(chunk_rows):
            key = picks[start + i]
            if key is not None:
                mask = rle_decode(per_frame[start + i][key]["rle_mask"], f"{where} frame {start + i} {key!r}")
                buf[i] = np.packbits(mask, axis=-1)
        payloads.append(codec.encode(buf))
    columns = {"obj_id": obj_id, "event": event, "point": point, "frame_id": frame_id, "frame_range": frame_range,
               "interactions": count}
    return SegmentEpisode(columns, list(vocab), tuple(payloads), int((obj_id >= 0).sum()), int((count > 1).sum()))


def segment_events(metadata: str | None, where: str) -> list[str]:
    """The event strings of an episode's ``segment_events`` metadata (``FormatError`` unless a JSON list of str)."""
    try:
        value = loads_json(metadata) if isinstance(metadata, str) else None
    except ValueError:  # not JSON, or nested too deep
        value = None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FormatError(f"{where}: the '{EVENTS_FIELD}' metadata must be a JSON list of str, found {metadata!r}; "
                          "import the MineStudio directory again")
    return value
