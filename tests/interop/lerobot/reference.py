"""LeRobot's own items of the committed fixtures (``<name>_reference.json``), and their comparison with ours."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
from interop.lerobot.make_fixtures import FIXTURES


def load_reference(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}_reference.json").read_text())


def frames_of(entry: dict[str, Any]) -> np.ndarray:
    """The uint8 frames (``[.., C, H, W]``) LeRobot returned, from ``round(255 * x)``."""
    return np.frombuffer(base64.b64decode(entry["frames_chw_base64"]), np.uint8).reshape(entry["shape"])


def differences(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """What differs between one of our items and LeRobot's (keys, dtypes, shapes, values, exact frames)."""
    out = []
    if set(ours) != set(theirs):
        out.append(f"keys differ: {sorted(set(ours) ^ set(theirs))}")
    for key, want in theirs.items():
        got = ours.get(key)
        if isinstance(want, dict) and "frames_chw_base64" in want:
            mine = np.round(got.numpy() * 255).astype(np.uint8)
            if mine.shape != tuple(want["shape"]) or not np.array_equal(mine, frames_of(want)):
                out.append(f"{key}: frames differ")
        elif isinstance(want, dict) and "bool" in want:
            if got.tolist() != want["bool"]:
                out.append(f"{key}: {got.tolist()} != {want['bool']}")
        elif isinstance(want, dict):
            if (str(got.dtype).removeprefix("torch."), list(got.shape), got.tolist()) != \
                    (want["dtype"], want["shape"], want["values"]):
                out.append(f"{key}: {got!r} != {want}")
        elif got != want:
            out.append(f"{key}: {got!r} != {want!r}")
    return out
