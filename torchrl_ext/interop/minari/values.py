"""What one episode of a Minari file holds, as checked arrays, whichever backend read it.

Both readers (:mod:`.hdf5_episodes`, :mod:`.arrow_episodes`) hand their raw
arrays to the functions here, which check the per-step shape and dtype
against the space (or the episode's step count) and turn JPEG bytes into
frames exactly as Minari's own readers do (``PIL.Image.open``, then
``np.array(..., dtype=uint8)``), after checking each image's header (format,
size, mode) so a frame never decodes into more than the space's shape.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...format import DTYPES, FormatError, Key
from .spaces import Space

__all__ = [
    "MAX_INFO_BYTES",
    "RawEpisode",
    "check_leaf",
    "decode_jpeg",
    "info_array",
    "leaf_array",
    "step_flags",
    "step_rewards",
]

logger = logging.getLogger(__name__)

MAX_INFO_BYTES = 1 << 30  # one info leaf of one episode; larger ones are dropped with a note
_NUMBERS = "biuf"
_MODES = {1: "L", 3: "RGB"}


@dataclass
class RawEpisode:
    """One Minari episode of ``T`` steps, checked.

    Attributes:
        index: its index in the dataset (``0 .. total_episodes - 1``).
        observations: ``{key: [T + 1, ...]}`` per observation leaf.
        actions: ``{key: [T, ...]}`` per action leaf.
        rewards: float32 ``[T]``; terminations, truncations: bool ``[T]``.
        infos: ``{key: [T + 1, ...]}`` of the infos that are arrays of numbers per step (keys under ``info``).
        dropped: ``{info key: why}`` of the infos left out.
        seed: the seed Minari stored for the episode, if any.
    """

    index: int
    observations: dict[Key, np.ndarray]
    actions: dict[Key, np.ndarray]
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    infos: dict[Key, np.ndarray] = field(default_factory=dict)
    dropped: dict[Key, str] = field(default_factory=dict)
    seed: int | None = None

    @property
    def steps(self) -> int:
        return int(self.rewards.shape[0])


def _shown(key: Key) -> str:
    return "/".join(key)


def check_leaf(shape: tuple[int, ...], dtype: np.dtype, leaf: Space, rows: int, where: str, key: Key) -> None:
    """Refuses what :func:`leaf_array` would refuse, from the shape and dtype alone (before a read)."""
    dtype = np.dtype(dtype)
    expected = (rows, *leaf.shape)
    if dtype.kind not in _NUMBERS or dtype.name not in DTYPES:
        raise FormatError(f"{where}: {_shown(key)} has dtype {dtype}, expected {leaf.dtype} numbers as its "
                          f"{leaf.kind} space says; the file was not written by Minari, or is damaged")
    if tuple(shape) != expected:
        raise FormatError(f"{where}: {_shown(key)} has shape {tuple(shape)}, expected {expected} ({rows} steps of "
                          f"its {leaf.kind} space {leaf.shape}); the file was not written by Minari, or is damaged")
    if dtype != leaf.dtype and not np.can_cast(dtype, leaf.dtype, "same_kind"):
        raise FormatError(f"{where}: {_shown(key)} has dtype {dtype}, its space says {leaf.dtype}; "
                          "the file does not match its metadata.json")


def leaf_array(arr: Any, leaf: Space, rows: int, where: str, key: Key) -> np.ndarray:
    """``arr`` as the leaf's column: shape ``[rows, *leaf.shape]``, numbers cast to the space's dtype.

    A same-kind dtype (int32 for an int64 space, float64 for a float32 Box) is
    cast; any other dtype, and every shape but the expected one, is refused.

    Raises:
        FormatError: naming ``where`` and the key.
    """
    arr = np.asarray(arr)
    check_leaf(arr.shape, arr.dtype, leaf, rows, where, key)
    return arr if arr.dtype == leaf.dtype else arr.astype(leaf.dtype)


def decode_jpeg(blobs: Sequence[Any], leaf: Space, rows: int, where: str, key: Key) -> np.ndarray:
    """JPEG frames (one bytes-like per step) -> uint8 ``[rows, *leaf.shape]``, as Minari decodes them.

    Raises:
        FormatError: a count other than ``rows``, a blob that is not a JPEG image of the space's size and mode.
    """
    try:
        from PIL import Image
    except ImportError as err:
        raise ImportError(f"reading Minari's JPEG frames needs Pillow ({err}); pip install torchrl-ext[minari]"
                          ) from err
    if len(blobs) != rows:
        raise FormatError(f"{where}: {_shown(key)} holds {len(blobs)} frames, expected {rows}; the file is damaged")
    h, w = leaf.shape[:2]
    mode = _MODES.get(1 if len(leaf.shape) == 2 else leaf.shape[2])
    if mode is None:
        raise FormatError(f"{where}: {_shown(key)} is stored as JPEG, but its frames of shape {leaf.shape} have "
                          "neither 1 nor 3 channels; the file was not written by Minari")
    out = np.empty((rows, *leaf.shape), np.uint8)
    for t, blob in enumerate(blobs):
        try:
            with Image.open(io.BytesIO(bytes(blob)), formats=["JPEG"]) as img:
                if img.size != (w, h) or img.mode != mode:
                    raise FormatError(f"{where}: {_shown(key)} frame {t} is a {img.mode} image of {img.size[0]}x"
                                      f"{img.size[1]}, expected {mode} {w}x{h}; the file is damaged")
                frame = np.array(img, dtype=np.uint8)
        except FormatError:
            raise
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            raise FormatError(f"{where}: {_shown(key)} frame {t} is not a readable JPEG image "
                              f"({type(err).__name__}: {err}); the file is damaged") from None
        out[t] = frame.reshape(leaf.shape)
    return out


def step_rewards(arr: Any, rows: int, where: str) -> np.ndarray:
    """Rewards ``[rows]`` (or ``[rows, 1]``) of numbers -> float32 ``[rows]``."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in _NUMBERS or arr.shape not in ((rows,), (rows, 1)):
        raise FormatError(f"{where}: rewards are {arr.dtype} of shape {arr.shape}, expected {rows} numbers; the "
                          "file was not written by Minari, or is damaged")
    return arr.reshape(rows).astype(np.float32)


def step_flags(arr: Any, rows: int, where: str, name: str) -> np.ndarray:
    """Terminations / truncations: ``rows`` bools (or 0/1 integers) -> bool ``[rows]``."""
    arr = np.asarray(arr)
    ok = arr.shape in ((rows,), (rows, 1)) and (arr.dtype.kind == "b" or (
        arr.dtype.kind in "iu" and bool(np.isin(arr, (0, 1)).all())))
    if not ok:
        raise FormatError(f"{where}: {name} are {arr.dtype} of shape {arr.shape}, expected {rows} bools; the file "
                          "was not written by Minari, or is damaged")
    return arr.reshape(rows).astype(bool)


def info_array(shape: tuple[int, ...] | None, dtype: np.dtype, rows: int) -> str | None:
    """Why an info of this shape and dtype is dropped (None: kept as a column of ``rows`` steps)."""
    if shape is None or len(shape) == 0:
        return "a single value, not one per step"
    if dtype.kind not in _NUMBERS or dtype.name not in DTYPES:
        return f"dtype {dtype}, not numbers"
    if shape[0] != rows:
        return f"{shape[0]} values, not one per observation ({rows})"
    if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize > MAX_INFO_BYTES:
        return f"more than {MAX_INFO_BYTES} bytes"
    return None
