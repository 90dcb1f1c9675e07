"""VPT's action mapping, as MineStudio 1.1.6 applies it to env actions: ``agent_action`` from ``env_action``.

Implemented from the published definition (``minestudio/utils/vpt_lib/actions.py``
``ActionTransformer.env2policy`` and ``action_mapping.py``
``CameraHierarchicalMapping.from_factored``), vectorised:

* camera: clipped to ``±camera_maxval`` degrees, mu-law encoded
  (``sign(x) * log(1 + mu|x|) / log(1 + mu)`` on ``x / maxval``, times ``maxval``),
  then binned ``round((x + maxval) / binsize)``; the joint camera action is
  ``bin_x * n_bins + bin_y``, the null bin ``n_bins // 2`` on both axes when
  inventory is pressed.
* buttons: one choice per group (hotbar, forward/back, left/right,
  sprint/sneak, use, drop, attack, jump, then camera on/off), the last pressed
  button of a group winning, forward+back and left+right together meaning
  neither; the joint index is the position of the tuple of choices in the
  product of the groups, and inventory (value 1) is the extra last index.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["BUTTONS", "BUTTON_GROUPS", "CameraQuantization", "agent_action", "discretize_camera", "null_agent_action"]

BUTTONS: tuple[str, ...] = ("attack", "back", "forward", "jump", "left", "right", "sneak", "sprint", "use",
                            "drop", "inventory", *(f"hotbar.{i}" for i in range(1, 10)))
"""VPT's factored button order (``Buttons.ALL``)."""

BUTTON_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("hotbar", tuple(f"hotbar.{i}" for i in range(1, 10))),
    ("fore_back", ("forward", "back")),
    ("left_right", ("left", "right")),
    ("sprint_sneak", ("sprint", "sneak")),
    ("use", ("use",)),
    ("drop", ("drop",)),
    ("attack", ("attack",)),
    ("jump", ("jump",)),
)
"""The mutually exclusive groups, in the mapping's order; each also has a 'none' choice first."""


class CameraQuantization:
    """MineStudio's ``ActionKernelCallback`` camera settings (defaults: 11 bins, mu-law, maxval 10, binsize 2, mu 10)."""

    def __init__(self, n_camera_bins: int = 11, camera_binsize: int = 2, camera_maxval: int = 10,
                 camera_mu: float = 10, camera_quantization_scheme: str = "mu_law") -> None:
        if not isinstance(n_camera_bins, int) or n_camera_bins < 1 or n_camera_bins % 2 == 0:
            raise ValueError(f"`n_camera_bins` must be an odd positive int, got {n_camera_bins!r}")
        if camera_quantization_scheme not in ("linear", "mu_law"):
            raise ValueError(f"`camera_quantization_scheme` must be 'linear' or 'mu_law', got "
                             f"{camera_quantization_scheme!r}")
        self.n_camera_bins = n_camera_bins
        self.binsize = camera_binsize
        self.maxval = camera_maxval
        self.mu = camera_mu
        self.scheme = camera_quantization_scheme

    @property
    def null_bin(self) -> int:
        return self.n_camera_bins // 2


def discretize_camera(camera: np.ndarray, q: CameraQuantization) -> np.ndarray:
    """Camera degrees ``[..., 2]`` -> int64 bins, with VPT's ``CameraQuantizer.discretize`` arithmetic."""
    xy = np.clip(camera, -q.maxval, q.maxval)
    if q.scheme == "mu_law":
        xy = xy / q.maxval
        v_encode = np.sign(xy) * (np.log(1.0 + q.mu * np.abs(xy)) / np.log(1.0 + q.mu))
        v_encode *= q.maxval
        xy = v_encode
    return np.round((xy + q.maxval) / q.binsize).astype(np.int64)


def _group_sizes(q: CameraQuantization) -> list[int]:
    return [len(buttons) + 1 for _, buttons in BUTTON_GROUPS] + [2]


def agent_action(env_action: Mapping[str, np.ndarray], q: CameraQuantization | None = None) -> dict[str, np.ndarray]:
    """``{"buttons": int64 [T, 1], "camera": int64 [T, 1]}`` of env actions ``{button: [T], "camera": [T, 2]}``.

    A button missing from ``env_action`` counts as not pressed.

    >>> a = {"forward": np.array([1, 0]), "camera": np.array([[0.0, 0.0], [5.0, -2.0]])}
    >>> out = agent_action(a)
    >>> out["buttons"][:, 0].tolist(), out["camera"][:, 0].tolist()
    ([288, 1], [60, 102])
    """
    q = q or CameraQuantization()
    camera = discretize_camera(np.asarray(env_action["camera"]), q)
    n = camera.shape[0]
    zeros = np.zeros(n)
    pressed = {b: np.asarray(env_action.get(b, zeros)).reshape(n) for b in BUTTONS}
    index = np.zeros(n, np.int64)
    for (name, buttons), size in zip(BUTTON_GROUPS, _group_sizes(q)):
        choice = np.zeros(n, np.int64)
        on = np.stack([pressed[b] != 0 for b in buttons], axis=1)
        if name in ("fore_back", "left_right"):
            on[on.all(axis=1)] = False
        for j in range(len(buttons)):  # the last pressed button of the group wins
            choice[on[:, j]] = j + 1
        index = index * size + choice
    camera_on = ~np.all(camera == q.null_bin, axis=1)
    index = index * 2 + camera_on
    inventory = pressed["inventory"] == 1
    n_combinations = int(np.prod(_group_sizes(q)))
    index[inventory] = n_combinations
    joint_camera = camera[:, 0] * q.n_camera_bins + camera[:, 1]
    joint_camera[inventory] = q.null_bin * q.n_camera_bins + q.null_bin
    return {"buttons": index[:, None], "camera": joint_camera[:, None]}


def null_agent_action(q: CameraQuantization | None = None) -> tuple[int, int]:
    """The ``(buttons, camera)`` indices of the all-zero env action (no button, camera at rest)."""
    out = agent_action({"camera": np.zeros((1, 2))}, q)
    return int(out["buttons"][0, 0]), int(out["camera"][0, 0])
