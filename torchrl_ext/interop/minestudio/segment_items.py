"""MineStudio's ``segmentation`` item entry, from the ``segment/...`` columns an import writes.

What MineStudio 1.1.6's ``SegmentationKernelCallback`` (``do_merge``,
``do_slice``, ``do_pad``; ``minestudio/data/minecraft/callbacks/segmentation.py``)
and ``EventDataset.to_tensor`` return for a window of ``T`` frames, under the
item key ``segmentation`` (the callback's name):

``obj_id``
    int64 ``[T]``: the frame's interaction type through MineStudio's
    remapping (1 becomes 3, 0 and 2-6 stay), -1 without an interaction, 0
    past the episode's end.
``obj_mask``
    uint8 ``[T, height, width]``: the 360x640 mask (unpacked from
    ``segment/mask_bits``) resized with ``cv2.INTER_NEAREST``; zeros without
    an interaction.
``event``
    list of ``T`` str, ``""`` without an interaction.
``point``
    ``[T, 2]``: the stored ``(y, x)`` divided by ``(360, 640)``, -1 without
    one; float32 when a frame of the chunks MineStudio reads for the window
    has a point, else int64 (the dtype numpy gives its list of points).
``frame_id``, ``frame_range``
    int64 ``[T]`` and ``[T, 2]``, -1 without an interaction.

A window that runs past its episode's end is padded by ``do_pad``, which puts
``event`` first; the keys then come in that order. The frame size is the
callback's ``frame_width``/``frame_height`` (config) or ``width``/``height``
(object), 224 by default, and the image's for MineStudio 1.0's flat
``enable_segment=True``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ...format import FormatError
from .segments import EVENTS_FIELD, MASK_SHAPE, segment_events

__all__ = ["SEG_RE_MAP", "SegmentSpec", "segment_spec", "SegmentItems"]

SEG_RE_MAP = {0: 0, 1: 3, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6}
"""MineStudio's remapping of ``obj_id`` when it reads a frame."""
DEFAULT_SIZE = 224
_REMAP = np.array([-1, *(SEG_RE_MAP[i] for i in range(len(SEG_RE_MAP)))], np.int64)  # index: stored obj_id + 1
_SCALE = np.array([float(MASK_SHAPE[0]), float(MASK_SHAPE[1])])
_BITS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1)  # byte -> its 8 pixels, first bit first
_COLUMNS = ("obj_id", "event", "point", "frame_id", "frame_range")


@dataclass(frozen=True)
class SegmentSpec:
    """The size the masks of the ``segmentation`` entry are resized to."""

    frame_width: int = DEFAULT_SIZE
    frame_height: int = DEFAULT_SIZE


def _size(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"segmentation `{name}` must be a positive int, got {value!r}")
    return value


def segment_spec(source: Any) -> SegmentSpec:
    """The :class:`SegmentSpec` of a ``modal_kernel_config["segmentation"]`` mapping or a callback object.

    >>> segment_spec({"frame_width": 128, "frame_height": 96})
    SegmentSpec(frame_width=128, frame_height=96)

    Raises:
        ValueError: a size that is not a positive int, or an unknown setting.
    """
    if isinstance(source, Mapping):
        unknown = sorted(set(source) - {"frame_width", "frame_height"})
        if unknown:
            raise ValueError(f"the 'segmentation' config names {unknown}; SegmentationKernelCallback takes "
                             "'frame_width' and 'frame_height'")
        width, height = source.get("frame_width", DEFAULT_SIZE), source.get("frame_height", DEFAULT_SIZE)
    else:
        width, height = getattr(source, "width", DEFAULT_SIZE), getattr(source, "height", DEFAULT_SIZE)
    return SegmentSpec(_size(width, "frame_width"), _size(height, "frame_height"))


def _unpack_resized(bits: np.ndarray, out: np.ndarray) -> None:
    """Unpacks each ``[360, 80]`` row of mask bits and resizes it into ``out[i]`` (``cv2.INTER_NEAREST``)."""
    h, w = out.shape[1:]
    rows, width = MASK_SHAPE
    if (h, w) == MASK_SHAPE:
        for i, b in enumerate(bits):
            np.take(_BITS, b, axis=0, out=out[i].reshape(rows, -1, 8))
        return
    import cv2

    if torch.utils.data.get_worker_info() is not None:
        cv2.setNumThreads(1)  # DataLoader workers are the parallelism
    buf = np.empty((rows, bits.shape[-1], 8), np.uint8)
    for i, b in enumerate(bits):
        np.take(_BITS, b, axis=0, out=buf)
        cv2.resize(buf.reshape(rows, -1)[:, :width], (w, h), dst=out[i], interpolation=cv2.INTER_NEAREST)


class SegmentItems:
    """Reads the ``segmentation`` entries of windows of imported datasets (used by ``MineStudioItems``).

    Raises:
        ValueError: a dataset imported without its segment modality.
        FormatError: segment metadata that is missing or damaged.
    """

    def __init__(self, storages: Sequence[Any], windows: Any, spec: SegmentSpec) -> None:
        self.storages, self.windows, self.spec = list(storages), windows, spec
        self.chunk_size: list[int] = []
        self.events: list[list[list[str]]] = []
        for st in self.storages:
            keys = {c.key for c in st.manifest.schema}
            cs = (st.manifest.source or {}).get("chunk_size")
            if ("segment", "mask_bits") not in keys or not isinstance(cs, int) or cs < 1:
                raise ValueError(f"{st.root}: the 'segmentation' modality was not imported; import the MineStudio "
                                 "directory with its segment/ folder (modalities=[..., 'segment']) or leave it out")
            self.chunk_size.append(cs)
            table = st.episode_table()
            where = f"{st.root} episode table"
            self.events.append([segment_events(v[0], where)
                                for v in table.values([EVENTS_FIELD], num_episodes=st.num_episodes)])

    def _any_point(self, r: int, ids: np.ndarray) -> np.ndarray:
        """Per window: does a frame of the chunks MineStudio reads for it have a point?"""
        w, cs = self.windows, self.chunk_size[r]
        start, length = w.start[ids], w.length[ids]
        end = np.minimum(start + w.win_len * w.skip_frame - 1, length - 1)
        lo, hi = start // cs * cs, np.minimum((end // cs + 1) * cs, length)
        first = w.first_row[ids]
        rows = np.concatenate([np.arange(f + a, f + b, dtype=np.int64) for f, a, b in zip(first, lo, hi)])
        has = ~np.isnan(self.storages[r].reader.gather_column(("segment", "point"), rows)[:, 0])
        return np.add.reduceat(has, np.concatenate([[0], np.cumsum(hi - lo)[:-1]])) > 0

    def gather(self, r: int, ids: np.ndarray, rows: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
        """The entries' arrays for windows ``ids`` of dataset ``r`` (``rows``/``mask`` ``[B, T]``)."""
        st, spec = self.storages[r], self.spec
        flat, ok = rows.reshape(-1), mask.reshape(-1)
        cols = {k: st.reader.gather_column(("segment", k), flat) for k in _COLUMNS}
        stored = cols["obj_id"].astype(np.int64)
        bad = (stored < -1) | (stored >= len(SEG_RE_MAP))
        if bad.any():
            raise FormatError(f"{st.root}: segment obj_id {int(stored[bad][0])} at row {int(flat[bad][0])}: "
                              f"MineStudio's reader maps obj_id {sorted(SEG_RE_MAP)} only; leave segmentation out")
        inter = ok & (stored >= 0)
        obj_id = np.where(ok, _REMAP[stored + 1], 0)
        masks = np.zeros((flat.size, spec.frame_height, spec.frame_width), np.uint8)
        if inter.any():
            bits = st.reader.gather_column(("segment", "mask_bits"), flat[inter])
            if inter.all():
                _unpack_resized(bits, masks)
            else:
                part = np.empty((len(bits), spec.frame_height, spec.frame_width), np.uint8)
                _unpack_resized(bits, part)
                masks[inter] = part
        point = cols["point"]
        point = np.where(ok[:, None] & ~np.isnan(point), point / _SCALE, -1.0)
        frame_id = np.where(inter, cols["frame_id"], -1)
        frame_range = np.where(inter[:, None], cols["frame_range"], -1)
        event = np.where(inter, cols["event"], -1)
        shape = rows.shape
        return {"obj_id": obj_id.reshape(shape), "obj_mask": masks.reshape(*shape, *masks.shape[1:]),
                "event": event.reshape(shape), "point": point.reshape(*shape, 2),
                "frame_id": frame_id.reshape(shape), "frame_range": frame_range.reshape(*shape, 2),
                "any_point": self._any_point(r, ids), "padded": ~mask.all(axis=1),
                "vocab": [self.events[r][int(e)] for e in self.windows.episode[ids]]}

    @staticmethod
    def item(parts: Mapping[str, Any], j: int) -> dict[str, Any]:
        """The ``segmentation`` entry of window ``j`` of :meth:`gather`'s arrays."""
        vocab = parts["vocab"][j]
        point = parts["point"][j]
        entry = {
            "obj_id": torch.from_numpy(parts["obj_id"][j].copy()),
            "obj_mask": torch.from_numpy(parts["obj_mask"][j].copy()),
            "event": [vocab[i] if i >= 0 else "" for i in parts["event"][j].tolist()],
            "point": torch.from_numpy(point.astype(np.float32) if parts["any_point"][j] else point.astype(np.int64)),
            "frame_id": torch.from_numpy(parts["frame_id"][j].astype(np.int64)),
            "frame_range": torch.from_numpy(parts["frame_range"][j].astype(np.int64)),
        }
        if parts["padded"][j]:  # do_pad builds a new dict, event first
            entry = {"event": entry.pop("event"), **entry}
        return entry
