"""``LeRobotFrames``: LeRobot's items (``LeRobotDataset.__getitem__``), ``delta_timestamps`` included, from a dataset here.

For frame ``i`` of episode ``[first, last]`` and a key with deltas ``d``
(seconds, multiples of ``1 / fps``), LeRobot returns the key's values at rows
``clip(i + round(d * fps), first, last)`` stacked, and ``<key>_is_pad`` True
where ``i + round(d * fps)`` falls outside the episode; keys without deltas
give their value at ``i``. Values come as LeRobot's torch conversion makes
them: floats float32, ints int64, shape-``[1]`` features 0-d, frames float32
``[C, H, W]`` in ``[0, 1]`` (``uint8 / 255``); ``timestamp``, ``frame_index``
(the step), ``episode_index``, ``index`` (the dataset row), ``task_index`` and
``task`` (its text) as LeRobot adds them.

Reads are batched: :meth:`LeRobotFrames.__getitems__` (which a
``DataLoader`` calls with a batch's indices) gathers each key once for the
whole batch through the dataset's reader, so frames are decoded once per
touched chunk rather than per item.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ...format import Key
from .importer import SOURCE_FORMAT

__all__ = ["LeRobotFrames", "lerobot_features"]

_OWNED = {("episode",), ("step",)}
_TED_FLAGS = {("next", "done"), ("next", "reward"), ("next", "terminated"), ("next", "truncated")}
_LEROBOT_OWN = ("timestamp", "frame_index", "episode_index", "index", "task_index")


def lerobot_features(manifest: Any) -> dict[str, tuple[Key, str, tuple[int, ...]]]:
    """``{LeRobot name: (dataset key, LeRobot dtype, LeRobot shape)}`` of a dataset: what an import recorded,
    else every stored column (keys joined by dots, uint8 ``[H, W, 3]`` columns as videos)."""
    src = manifest.source or {}
    if src.get("format") == SOURCE_FORMAT and isinstance(src.get("features"), dict):
        return {n: (tuple(f["key"].split("/")), f["dtype"], tuple(f["shape"])) for n, f in src["features"].items()}
    out = {}
    for c in manifest.schema:
        if c.key in _OWNED or (c.key[0] == "next" and c.key not in _TED_FLAGS):
            continue
        frames = c.dtype == np.uint8 and len(c.shape) == 3 and c.shape[2] == 3
        out[".".join(c.key)] = (c.key, "video" if frames else np.dtype(c.dtype).name, tuple(c.shape) or (1,))
    return out


def _torch_value(values: np.ndarray, dtype: str, shape: tuple[int, ...], stacked: bool) -> torch.Tensor:
    """Values of one item as LeRobot's conversion returns them."""
    if dtype in ("video", "image"):  # float32 division by 255 rounds as LeRobot's torch division does
        return torch.from_numpy(np.ascontiguousarray(np.moveaxis(values, -1, -3), np.float32) / np.float32(255))
    if values.dtype == np.bool_:
        t = torch.from_numpy(values.astype(bool))
    elif values.dtype.kind == "f":
        t = torch.from_numpy(values.astype(np.float32))
    else:
        t = torch.from_numpy(values.astype(np.int64))
    lead = 1 if stacked else 0
    if shape == (1,) and t.dim() > lead:
        t = t.reshape(t.shape[:lead])
    return t


class LeRobotFrames(torch.utils.data.Dataset):
    """The items ``LeRobotDataset(...)[i]`` returns, read from a dataset (e.g. one made by :func:`import_lerobot`).

    Args:
        source: dataset directory, :class:`~torchrl_ext.ShardedStorage` or
            :class:`~torchrl_ext.storages.EpisodeView` (its rows, numbered from 0).
        delta_timestamps: LeRobot's ``{feature name: [seconds, ...]}``.
        fps: frames per second (default: the imported dataset's).
        tolerance_s: how far a delta may be from a multiple of ``1 / fps`` (LeRobot's check).

    Raises:
        ValueError: a key that is no feature, a delta off the frame grid, or no ``fps`` known.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> import torchrl_ext
        >>> from torchrl_ext.interop.lerobot import import_lerobot
        >>> src = Path(torchrl_ext.__file__).parents[1] / "tests/interop/lerobot/fixtures/h264"
        >>> root = import_lerobot(src, tempfile.mkdtemp() + "/ds", progress=False).root
        >>> frames = LeRobotFrames(root, {"action": [-0.1, 0.0], "observation.images.top": [0.0]})
        >>> item = frames[23]  # the first frame of episode 1
        >>> item["action"].shape, item["action_is_pad"].tolist(), item["observation.images.top"].shape, item["task"]
        (torch.Size([2, 6]), [True, False], torch.Size([1, 3, 32, 32]), 'push the blue block')
    """

    def __init__(self, source: Any, delta_timestamps: Mapping[str, Sequence[float]] | None = None, *,
                 fps: int | None = None, tolerance_s: float = 1e-4) -> None:
        from ...storages import EpisodeView, ShardedStorage

        self.view = source if isinstance(source, EpisodeView) else None
        if self.view is not None:
            self.storage = self.view.base
        elif isinstance(source, ShardedStorage):
            self.storage = source
        elif isinstance(source, (str, os.PathLike)):
            self.storage = ShardedStorage(source)
        else:
            raise TypeError(f"`source` must be a dataset path, a ShardedStorage or an EpisodeView, got "
                            f"{type(source).__name__}")
        manifest = self.storage.manifest
        src = manifest.source or {}
        self.fps = fps if fps is not None else src.get("fps") if src.get("format") == SOURCE_FORMAT else None
        if isinstance(self.fps, bool) or not isinstance(self.fps, int) or self.fps <= 0:
            raise ValueError(f"`fps` must be a positive int (the dataset records none), got {self.fps!r}")
        self.features = {n: f for n, f in lerobot_features(manifest).items() if n not in _LEROBOT_OWN}
        self.tasks = list(src.get("tasks") or [])
        self.deltas = self._deltas(delta_timestamps or {}, tolerance_s)
        self.reader = self.storage.reader
        self.stored = set(self.storage.storage_keys)

    def _deltas(self, delta_timestamps: Mapping[str, Sequence[float]], tol: float) -> dict[str, np.ndarray]:
        if not isinstance(delta_timestamps, Mapping):
            raise TypeError(f"`delta_timestamps` must map a feature name to seconds, got "
                            f"{type(delta_timestamps).__name__}")
        out = {}
        for key, deltas in delta_timestamps.items():
            if key not in self.features:
                raise ValueError(f"`delta_timestamps` names {key!r}, not a feature; features are {sorted(self.features)}")
            d = np.asarray(list(deltas), np.float64)
            if d.ndim != 1 or not d.size or not np.isfinite(d).all():
                raise ValueError(f"`delta_timestamps[{key!r}]` must be a non-empty list of seconds, got {deltas!r}")
            off = np.abs(d * self.fps - np.round(d * self.fps)) / self.fps
            if (off > tol).any():
                raise ValueError(f"`delta_timestamps[{key!r}]` has {d[off > tol].tolist()}, not multiples of "
                                 f"1/{self.fps} s within {tol} s; round them to the frame grid")
            out[key] = np.round(d * self.fps).astype(np.int64)
        return out

    def __len__(self) -> int:
        return len(self.view) if self.view is not None else len(self.storage)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]

    def _base_rows(self, indices: Sequence[int]) -> np.ndarray:
        idx = np.asarray(indices, np.int64).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"index out of range for {n} frames: {idx[(idx < -n) | (idx >= n)][:4].tolist()}")
        idx = idx % max(n, 1)
        return self.view.base_rows(idx) if self.view is not None else idx

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """The items of ``indices``, each key read once for all of them."""
        rows = self._base_rows(indices)
        first, length = self.storage.episode_bounds
        ep = np.searchsorted(first, rows, side="right") - 1
        lo, hi = first[ep], first[ep] + length[ep] - 1
        plain = [n for n in self.features if n not in self.deltas]
        keys = [self.features[n][0] for n in plain] + [("timestamp",), ("task_index",)]
        got = self.reader.gather(rows, keys=[k for k in keys if k in self.stored])
        b = len(rows)
        items: list[dict[str, Any]] = [{} for _ in range(b)]
        for name in plain:
            key, dtype, shape = self.features[name]
            vals = _torch_value(got[key], dtype, shape, stacked=True)
            for j in range(b):
                items[j][name] = vals[j]
        for name, d in self.deltas.items():
            key, dtype, shape = self.features[name]
            want = rows[:, None] + d[None, :]
            q = np.clip(want, lo[:, None], hi[:, None])
            vals = self.reader.gather(q.reshape(-1), keys=[key])[key]
            vals = _torch_value(vals.reshape(b, len(d), *vals.shape[1:]), dtype, shape, stacked=True)
            pad = torch.from_numpy((want < lo[:, None]) | (want > hi[:, None]))
            for j in range(b):
                items[j][name] = vals[j]
                items[j][f"{name}_is_pad"] = pad[j]
        step = rows - first[ep]
        ts = got[("timestamp",)] if ("timestamp",) in got else step / self.fps
        task = got[("task_index",)] if ("task_index",) in got else np.zeros(b, np.int64)
        for j in range(b):
            items[j].update(timestamp=torch.tensor(float(ts[j]), dtype=torch.float32),
                            frame_index=torch.tensor(int(step[j])), episode_index=torch.tensor(int(ep[j])),
                            index=torch.tensor(int(rows[j])), task_index=torch.tensor(int(task[j])),
                            task=self.tasks[int(task[j])] if int(task[j]) < len(self.tasks) else "")
        return items
