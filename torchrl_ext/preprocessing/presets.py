"""Ready-made row-wise functions for :func:`torchrl_ext.preprocess`.

Each preset is a picklable callable TensorDict ``[n]`` -> TensorDict ``[n]``
that transforms one observation column, ``key`` (``"observation"`` by
default; a nested one as a tuple, ``("observation", "image")``), and its
``("next", *key)`` when the batch has one; other columns pass
through. :func:`chain` applies several in order as one function.

* :class:`Resize` -- bilinear (antialiased) resize of the two spatial dims.
* :class:`Grayscale` -- RGB -> luma (ITU-R BT.601 weights), channel dim dropped.
* :class:`FrameStack` -- the last ``n`` frames of the same episode, stacked on
  a new dim after the batch dim (the episode's first frame repeats before it).
* :class:`ToFloat` -- ``uint8`` -> ``float32`` in ``[0, 1]``.

Frames are ``[H, W]``, ``[C, H, W]`` or channels-last ``[H, W, C]`` (a last
dim of 1, 3 or 4 is read as channels); a stacked ``[n, H, W]`` resizes like
``[C, H, W]``.

Example:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> td = TensorDict({"observation": torch.full((2, 4, 4, 3), 255, dtype=torch.uint8)}, [2])
    >>> out = chain(Grayscale(), Resize(2, 2), ToFloat())(td)
    >>> out["observation"].shape, out["observation"].dtype, float(out["observation"].min())
    (torch.Size([2, 2, 2]), torch.float32, 1.0)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["Chain", "FrameStack", "Grayscale", "Resize", "ToFloat", "as_key", "chain"]

LUMA = (0.299, 0.587, 0.114)
_CHANNELS_LAST = (1, 3, 4)


def as_key(key: str | tuple[str, ...]) -> tuple[str, ...]:
    """A column name (``"observation"``) or nested key (``("observation", "image")``) as a key tuple."""
    return (key,) if isinstance(key, str) else tuple(key)


def _keys(td: Any, key: str | tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    """``key`` and ``("next", *key)``, those present in ``td``."""
    key = as_key(key)
    present = td.keys(include_nested=True, leaves_only=True)
    if key not in present:
        found = sorted("/".join(k) if isinstance(k, tuple) else k for k in present)
        raise ValueError(f"the batch has no {'/'.join(key)!r} column (found {found}); "
                         "pass the observation column as `key`")
    yield key
    if ("next", *key) in present:
        yield ("next", *key)


def _check_key(key: Any) -> None:
    parts = (key,) if isinstance(key, str) else key
    if not isinstance(parts, tuple) or not parts or not all(isinstance(p, str) and p for p in parts):
        raise TypeError(f"`key` must be a non-empty column name or a tuple of them (a nested key), got {key!r}")


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}")


def _to_dtype(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Float values back to ``dtype``: rounded and clamped for integer dtypes."""
    if dtype.is_floating_point:
        return x.to(dtype)
    info = torch.iinfo(dtype)
    return x.round().clamp(info.min, info.max).to(dtype)


def resize_frames(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear, antialiased resize of a batch of frames ``[B, *frame]`` (layouts as in the module doc)."""
    frame = x.shape[1:]
    if len(frame) < 2:
        raise ValueError(f"`Resize` needs frames with at least 2 dims (H, W), got frame shape {list(frame)}")
    last = len(frame) >= 3 and frame[-1] in _CHANNELS_LAST
    y = x.movedim(-1, -3) if last else x
    lead = y.shape[:-2]
    flat = y.reshape(-1, 1, *y.shape[-2:]).float()
    out = F.interpolate(flat, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    out = out.reshape(*lead, height, width)
    return _to_dtype(out.movedim(-3, -1) if last else out, x.dtype)


@dataclass(frozen=True)
class Resize:
    """Resizes ``key`` (and ``("next", key)``) to ``height`` x ``width``, keeping the dtype.

    Args:
        height: output height in pixels.
        width: output width in pixels.
        key: the observation column (a nested one as a tuple, e.g. ``("observation", "image")``).
    """

    height: int
    width: int
    key: str | tuple[str, ...] = "observation"

    def __post_init__(self) -> None:
        _positive_int("height", self.height)
        _positive_int("width", self.width)
        _check_key(self.key)

    def __call__(self, td: Any) -> Any:
        for k in list(_keys(td, self.key)):
            td[k] = resize_frames(td[k], self.height, self.width)
        return td


def grayscale_frames(x: torch.Tensor) -> torch.Tensor:
    """Luma of a batch of RGB frames ``[B, H, W, 3]`` or ``[B, 3, H, W]``; the channel dim is dropped."""
    frame = x.shape[1:]
    if len(frame) >= 3 and frame[-1] == 3:
        dim = -1
    elif len(frame) >= 3 and frame[-3] == 3:
        dim = -3
    else:
        raise ValueError(
            f"`Grayscale` expects RGB frames with 3 channels last or first, got frame shape {list(frame)}"
        )
    weights = torch.tensor(LUMA, dtype=torch.float32).reshape(3, *([1] * (-dim - 1)))
    return _to_dtype((x.float() * weights).sum(dim), x.dtype)


@dataclass(frozen=True)
class Grayscale:
    """RGB ``key`` (and ``("next", key)``) -> luma ``0.299 R + 0.587 G + 0.114 B``, keeping the dtype.

    Args:
        key: the observation column (a nested one as a tuple, e.g. ``("observation", "image")``).
    """

    key: str | tuple[str, ...] = "observation"

    def __post_init__(self) -> None:
        _check_key(self.key)

    def __call__(self, td: Any) -> Any:
        for k in list(_keys(td, self.key)):
            td[k] = grayscale_frames(td[k])
        return td


@dataclass(frozen=True)
class ToFloat:
    """``uint8`` ``key`` (and ``("next", key)``) -> ``float32`` divided by 255.

    Args:
        key: the observation column (a nested one as a tuple, e.g. ``("observation", "image")``).
    """

    key: str | tuple[str, ...] = "observation"

    def __post_init__(self) -> None:
        _check_key(self.key)

    def __call__(self, td: Any) -> Any:
        for k in list(_keys(td, self.key)):
            if td[k].dtype != torch.uint8:
                raise ValueError(f"`ToFloat` expects uint8 {k!r}, got {td[k].dtype}; apply it once, last")
            td[k] = td[k].float().div_(255)
        return td


@dataclass
class FrameStack:
    """The last ``n`` frames of the row's episode: ``key`` ``[*frame]`` -> ``[n, *frame]``.

    Row ``r`` gets frames ``r - n + 1 .. r`` (the episode's first frame repeats
    before it starts) and ``("next", key)`` gets frames ``r - n + 2 .. r`` plus
    the row's own next value. History frames before the batch are read from
    the source dataset and passed through ``before`` (the presets applied
    earlier in the chain), so the result does not depend on batching.

    Args:
        root: the source dataset (the one :func:`~torchrl_ext.preprocess` reads).
        n: frames per stack.
        key: the observation column (a nested one as a tuple, e.g. ``("observation", "image")``).
        before: function applied to history rows read from ``root``; :func:`chain`
            sets it to the presets before this one.
    """

    root: str | os.PathLike
    n: int = 4
    key: str | tuple[str, ...] = "observation"
    before: Callable[[Any], Any] | None = None
    _storage: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _positive_int("n", self.n)
        _check_key(self.key)
        self.root = os.fspath(self.root)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_storage": None}  # workers open the source themselves

    def _frames(self, rows: torch.Tensor) -> torch.Tensor:
        td = self._storage.get(rows)
        if self.before is not None:
            td = self.before(td)
        return td[as_key(self.key)]

    def __call__(self, td: Any) -> Any:
        if self._storage is None:
            from ..storages import ShardedStorage

            self._storage = ShardedStorage(self.root, cache_bytes=0)
        key = as_key(self.key)
        now = td[key]
        first = torch.as_tensor(self._storage.episode_bounds[0], dtype=torch.int64)
        start = first[td["episode"].reshape(-1).long()]
        rows = start + td["step"].reshape(-1).long()
        back = torch.arange(self.n - 1, -1, -1)
        idx = torch.maximum(rows[:, None] - back, start[:, None])  # [B, n] global rows
        b = len(rows)
        r0 = int(rows[0]) if b else 0
        if b and bool((rows == torch.arange(r0, r0 + b)).all()):  # consecutive: reuse the batch
            lo = int(idx.min())
            pool = torch.cat([self._frames(torch.arange(lo, r0)), now]) if lo < r0 else now
            stacked = pool[idx - lo]
        else:
            stacked = self._frames(idx.reshape(-1)).reshape(b, self.n, *now.shape[1:])
        td[key] = stacked
        if ("next", *key) in td.keys(include_nested=True):
            td["next", *key] = torch.cat([stacked[:, 1:], td["next", *key][:, None]], 1)
        return td


@dataclass(frozen=True)
class Chain:
    """Applies ``steps`` in order (build it with :func:`chain`)."""

    steps: tuple[Callable[[Any], Any], ...]

    def __call__(self, td: Any) -> Any:
        for step in self.steps:
            td = step(td)
        return td


def chain(*steps: Callable[[Any], Any]) -> Chain:
    """One function applying ``steps`` in order; a :class:`FrameStack` gets the steps before it.

    Args:
        *steps: presets (or any row-wise functions) in the order to apply them.

    Returns:
        A picklable :class:`Chain`.
    """
    if not steps:
        raise ValueError("`chain` needs at least one step, got none")
    wired: list[Callable[[Any], Any]] = []
    for step in steps:
        if not callable(step):
            raise TypeError(f"every step must be callable, got {type(step).__name__}")
        if isinstance(step, FrameStack) and step.before is None and wired:
            step = dataclasses.replace(step, before=Chain(tuple(wired)))
        wired.append(step)
    return Chain(tuple(wired))
