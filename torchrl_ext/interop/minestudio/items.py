"""MineStudio-compatible items: what MineStudio 1.1.6's ``EventDataset`` returns, from an imported dataset.

:class:`~torchrl_ext.events.EventWindowDataset` takes MineStudio's
constructor arguments (:func:`minestudio_spec`) and, with
``compat="minestudio"`` over datasets written by
:func:`torchrl_ext.interop.minestudio.import_minestudio`, returns MineStudio's
items (:class:`MineStudioItems`), same windows in the same order:

``image``
    uint8 ``[T, frame_height, frame_width, 3]``: the stored frames, resized
    with ``cv2.resize(..., cv2.INTER_LINEAR)`` when the size differs
    (``ImageKernelCallback.do_decode``); zeros past the episode's end.
``env_action`` (and ``env_prev_action``)
    ``{key: [T, ...]}`` as stored, zeros where padded, the dtype MineStudio's
    padding gives (``result_type(stored, uint8)`` when a window is padded),
    float64 as float32 (``EventDataset.to_tensor``).
``agent_action`` (and ``agent_prev_action``)
    ``{"buttons": int64 [T, 1], "camera": int64 [T, 1]}``
    (:mod:`torchrl_ext.interop.minestudio.vpt_actions`).
``meta_info``
    ``{field: [T]}`` of the stored numeric fields (MineStudio keeps Python
    lists here, with None past the end; these are tensors with 0).
``mask``
    uint8 ``[T]``: MineStudio keeps the mask of the last modality read, so
    when that is an action with ``enable_prev_action`` it is all ones;
    otherwise 1 inside the episode, 0 past its end.
``segmentation``
    with ``enable_segment=True`` or the ``"segmentation"`` callback:
    ``SegmentationKernelCallback``'s entry (:mod:`.minestudio_segment`).
``text``, ``episode``, ``timestamp``
    the event name without ``"minecraft."``, MineStudio's episode name, and
    ``arange(start, start + win_len, skip_frame)``.

Two deliberate differences: a window starting past its episode's end (a
large ``bias``), which MineStudio cannot read, is left out; and
``skip_frame`` other than 1 selects MineStudio's windows but returns
consistent shapes (MineStudio's own mask and timestamp lengths disagree there).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ...validation import user_path
from .frames import WindowFrames
from .segment_items import SegmentItems, SegmentSpec, segment_spec
from .vpt_actions import CameraQuantization, agent_action

__all__ = ["MINESTUDIO_OPTIONS", "ItemSpec", "minestudio_spec", "is_minestudio_import", "MineStudioItems",
           "minestudio_roots", "WINDOW_ITEMS"]

MINESTUDIO_OPTIONS = ("dataset_dirs", "modal_kernel_callbacks", "modal_kernel_config", "enable_video",
                      "enable_action", "enable_contractor_info", "enable_segment", "frame_width", "frame_height",
                      "verbose", "event_paths")
"""MineStudio ``EventDataset`` arguments (1.0 and 1.1 forms) that are not window options."""

_FLAT_OPTIONS = ("enable_video", "enable_action", "enable_contractor_info", "enable_segment", "frame_width",
                 "frame_height")  # 1.0's form
_CAMERA_ARGS = ("n_camera_bins", "camera_binsize", "camera_maxval", "camera_mu", "camera_quantization_scheme")


@dataclass(frozen=True)
class ItemSpec:
    """What a MineStudio item holds: modalities in order and their settings."""

    modalities: tuple[str, ...] = ("image", "action")
    frame_width: int = 128
    frame_height: int = 128
    prev_action: bool = True
    camera: CameraQuantization = field(default_factory=CameraQuantization, compare=False)
    ones_mask: bool = False  # MineStudio 1.1: mask of the last modality, all ones for a prev-action read
    dataset_dirs: tuple[str, ...] | None = None
    segment: SegmentSpec | None = None


def _size(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}")
    return value


# MineStudio registers its callbacks under their class names; their settings sit under the modality's key
_REGISTERED = {"ImageKernelCallback": "image", "ActionKernelCallback": "action",
               "MetaInfoKernelCallback": "meta_info", "SegmentationKernelCallback": "segmentation"}


def _callback(cb: Any, config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(modality, settings)`` of a MineStudio kernel callback given by name (with config) or as an object."""
    if isinstance(cb, str):
        name = _REGISTERED.get(cb, cb)
        settings = dict(config.get(name, {}) or {})
    else:
        name = getattr(cb, "name", None)
        settings = {k: getattr(cb, k) for k in ("frame_width", "frame_height", "enable_prev_action", "read_bias",
                                                  "win_bias", "enable_video_aug") if hasattr(cb, k)}
        tr, mapper = getattr(cb, "action_transformer", None), getattr(cb, "action_mapper", None)
        if mapper is not None:
            settings["n_camera_bins"] = mapper.n_camera_bins
        if tr is not None:
            settings.update(camera_binsize=tr.camera_binsize, camera_maxval=tr.camera_maxval,
                            camera_mu=tr.camera_mu, camera_quantization_scheme=tr.camera_quantization_scheme)
    if name not in ("image", "action", "meta_info", "segmentation"):
        raise ValueError(f"`modal_kernel_callbacks` entry {cb!r} is not one of MineStudio's 'image', 'action', "
                         "'meta_info', 'segmentation' callbacks (or their registered names, e.g. "
                         "'ImageKernelCallback')")
    return name, settings


def minestudio_spec(options: dict[str, Any], *, default: bool = False) -> ItemSpec | None:
    """Pops MineStudio's constructor arguments from ``options``; their :class:`ItemSpec`, or None when none is given.

    Both forms are accepted: MineStudio 1.1's ``modal_kernel_callbacks``
    (names with ``modal_kernel_config``, or the callback objects) and 1.0's
    ``enable_video`` / ``enable_action`` / ``enable_contractor_info`` with
    ``frame_width`` / ``frame_height`` (actions with their previous action,
    as 1.0 returns them).

    Raises:
        ValueError: video augmentation asked for, event paths outside the
            datasets, or an unsupported action read.
    """
    given = {k: options.pop(k) for k in MINESTUDIO_OPTIONS if k in options}
    if not given and not default:
        return None
    if given.get("event_paths") is not None:
        raise ValueError("`event_paths` is not supported: events are part of each imported dataset; leave it None")
    dirs = given.get("dataset_dirs")
    if dirs is not None:
        dirs = (str(dirs),) if isinstance(dirs, (str, os.PathLike)) else tuple(str(d) for d in dirs)
    callbacks = given.get("modal_kernel_callbacks")
    if callbacks is None:
        mods = tuple(m for m, on in (("image", given.get("enable_video", True)),
                                     ("action", given.get("enable_action", True)),
                                     ("meta_info", given.get("enable_contractor_info", False)),
                                     ("segmentation", given.get("enable_segment", False))) if on)
        if not mods:
            raise ValueError("enable at least one of `enable_video`, `enable_action`, `enable_contractor_info`")
        fw = _size(given.get("frame_width", 128), "frame_width")
        fh = _size(given.get("frame_height", 128), "frame_height")
        return ItemSpec(mods, fw, fh, True, CameraQuantization(), False, dirs,
                        SegmentSpec(fw, fh) if "segmentation" in mods else None)
    flat = sorted(k for k in _FLAT_OPTIONS if k in given)
    if flat:  # MineStudio 1.1 raises TypeError for these too: never ignore a setting
        raise TypeError(f"{flat} are MineStudio 1.0 arguments; with `modal_kernel_callbacks` (1.1) set them per "
                        "callback, e.g. modal_kernel_config={'image': {'frame_width': 96, 'frame_height': 64}}")
    config = given.get("modal_kernel_config") or {}
    mods, image, action, segment = [], {}, {}, None
    for cb in callbacks:
        name, settings = _callback(cb, config)
        if name == "segmentation":
            segment = segment_spec(settings if isinstance(cb, str) else cb)
        mods.append(name)
        if name == "image":
            image = settings
        elif name == "action":
            action = settings
    if not mods:
        raise ValueError("`modal_kernel_callbacks` must name at least one callback, got none")
    if image.get("enable_video_aug"):
        raise ValueError("`enable_video_aug=True`: random augmentation is not reproduced; apply it to the batch")
    prev = bool(action.get("enable_prev_action", False))
    biases = (action.get("read_bias", 0), action.get("win_bias", 0))
    if biases != ((-1, 1) if prev else (0, 0)):
        raise ValueError(f"action read_bias/win_bias {biases} with enable_prev_action={prev} is not supported; "
                         "use (-1, 1) with previous actions (MineStudio's setting) or (0, 0) without")
    camera = CameraQuantization(**{k: action[k] for k in _CAMERA_ARGS if k in action})
    return ItemSpec(tuple(mods), _size(image.get("frame_width", 128), "frame_width"),
                    _size(image.get("frame_height", 128), "frame_height"), prev, camera,
                    mods[-1] == "action" and prev, dirs, segment)


def minestudio_roots(spec: ItemSpec, roots: Any) -> Any:
    """The dataset roots: ``roots`` or the spec's ``dataset_dirs`` (which must be imported datasets)."""
    if spec.dataset_dirs is None:
        return roots
    if roots is not None:
        raise TypeError("pass the datasets either as `roots` or as `dataset_dirs`, not both")
    for d in spec.dataset_dirs:
        p = user_path(d, "dataset_dirs")
        if not (p / "dataset.json").exists() and any((p / n).is_dir() for n in ("image", "video", "action")):
            raise ValueError(f"{p} is a MineStudio dataset directory; import it first "
                             f"(torchrl-ext import minestudio {p} --root ROOT) and pass ROOT")
    return list(spec.dataset_dirs)


def is_minestudio_import(storage: Any) -> bool:
    """True for a dataset written by the MineStudio importer."""
    source = storage.manifest.source or {}
    return source.get("format") == "minestudio"


def _to_tensor(arr: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(arr))
    return t.float() if t.dtype == torch.float64 else t


class MineStudioItems:
    """Assembles MineStudio items for windows of imported datasets (used by ``EventWindowDataset``)."""

    def __init__(self, storages: Sequence[Any], windows: Any, texts: Sequence[str], spec: ItemSpec) -> None:
        for st in storages:
            if not hasattr(st, "reader"):
                raise ValueError(f"{st.root}: MineStudio items read whole datasets; pass the dataset root and "
                                 "restrict episodes with `where=`")
            if not is_minestudio_import(st):
                raise ValueError(f"{st.root}: not written by the MineStudio importer; MineStudio items need "
                                 "`image` and `action` columns as import_minestudio writes them")
        self.storages = list(storages)
        self.windows = windows
        self.texts = list(texts)
        self.spec = spec
        self._frames: list[Any] = [None] * len(self.storages)
        self.names = []
        self.action_keys = []
        self.meta_keys = []
        for st in self.storages:
            table = st.episode_table()
            self.names.append([str(v[0]) for v in table.values(["name"], num_episodes=st.num_episodes)])
            keys = [c.key for c in st.manifest.schema]
            self.action_keys.append([k for k in keys if k[0] == "action" and len(k) == 2])
            self.meta_keys.append([k for k in keys if k[0] == "meta_info" and len(k) == 2])
        for mod, present in (("image", ("image",)), ("action", None), ("meta_info", None)):
            if mod not in spec.modalities:
                continue
            for r, st in enumerate(self.storages):
                ok = (present in _keys_of(st)) if present else bool(
                    self.action_keys[r] if mod == "action" else self.meta_keys[r])
                if not ok:
                    raise ValueError(f"{st.root}: the {mod!r} modality was not imported; leave it out of the "
                                     "MineStudio arguments or import it")
        self.segments = SegmentItems(self.storages, windows, spec.segment) if spec.segment is not None else None

    def _image(self, r: int, rows: np.ndarray, mask: np.ndarray) -> torch.Tensor:
        if self._frames[r] is None:
            self._frames[r] = WindowFrames(self.storages[r], self.spec.frame_width, self.spec.frame_height)
        shape = (*rows.shape, self.spec.frame_height, self.spec.frame_width, 3)
        out = torch.empty(0, dtype=torch.uint8)
        if torch.utils.data.get_worker_info() is not None:  # decoded into shared memory: batchify passes it on
            out.set_(torch.UntypedStorage._new_shared(int(np.prod(shape))), 0, shape)
        else:
            out.resize_(shape)
        self._frames[r].fill(rows, mask, out.numpy())
        return out

    def _actions(self, r: int, rows: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
        st = self.storages[r]
        flat, ok = rows.reshape(-1), valid.reshape(-1)
        out = {}
        for key in self.action_keys[r]:
            col = st.reader.gather_column(key, flat)
            col[~ok] = 0
            out[key[1]] = col.reshape(*rows.shape, *col.shape[1:])
        return out

    def items(self, ids: np.ndarray) -> list[dict[str, Any]]:
        w = self.windows
        rows, mask = w.rows_and_mask(ids)
        steps = w.steps(ids)
        out: list[dict[str, Any] | None] = [None] * len(ids)
        for r in np.unique(w.root_id[ids]):
            pos = np.flatnonzero(w.root_id[ids] == r)
            st = self.storages[int(r)]
            parts: dict[str, Any] = {}
            if "image" in self.spec.modalities:
                parts["image"] = self._image(int(r), rows[pos], mask[pos])
            if "action" in self.spec.modalities:
                parts["action"] = self._actions(int(r), rows[pos], mask[pos])
                if self.spec.prev_action:
                    length = w.length[ids[pos]][:, None]
                    prev_ok = (steps[pos] >= 1) & (steps[pos] - 1 < length)
                    prev_rows = w.first_row[ids[pos]][:, None] + np.clip(steps[pos] - 1, 0, length - 1)
                    parts["prev"] = self._actions(int(r), prev_rows, prev_ok)
                    parts["padded"] = ~(prev_ok.all(axis=1) & mask[pos].all(axis=1))
                else:
                    parts["padded"] = ~mask[pos].all(axis=1)
            if "meta_info" in self.spec.modalities:
                flat = rows[pos].reshape(-1)
                parts["meta_info"] = {}
                for key in self.meta_keys[int(r)]:
                    col = st.reader.gather_column(key, flat).reshape(rows[pos].shape)
                    parts["meta_info"][key[1]] = np.where(mask[pos], col, np.zeros((), col.dtype))
            if self.segments is not None:
                parts["segmentation"] = self.segments.gather(int(r), ids[pos], rows[pos], mask[pos])
            for j, p in enumerate(pos):
                out[p] = self._item(int(r), int(ids[p]), j, parts, mask[p], steps[p])
        return out  # type: ignore[return-value]

    def _item(self, r: int, wid: int, j: int, parts: dict[str, Any], mask: np.ndarray, steps: np.ndarray
              ) -> dict[str, Any]:
        w, spec = self.windows, self.spec
        item: dict[str, Any] = {}
        for mod in spec.modalities:
            if mod == "image":
                item["image"] = parts["image"][j]
            elif mod == "action":
                padded = bool(parts["padded"][j])
                env = {k: _ms_dtype(v[j], padded) for k, v in parts["action"].items()}
                if spec.prev_action:
                    prev = {k: _ms_dtype(v[j], padded) for k, v in parts["prev"].items()}
                    item["env_action"] = {k: _to_tensor(v) for k, v in env.items()}
                    item["env_prev_action"] = {k: _to_tensor(v) for k, v in prev.items()}
                    item["agent_action"] = _agent(env, spec.camera)
                    item["agent_prev_action"] = _agent(prev, spec.camera)
                else:
                    item["env_action"] = {k: _to_tensor(v) for k, v in env.items()}
                    item["agent_action"] = _agent(env, spec.camera)
            elif mod == "segmentation":
                item["segmentation"] = SegmentItems.item(parts["segmentation"], j)
            else:
                item["meta_info"] = {k: _to_tensor(v[j]) for k, v in parts["meta_info"].items()}
        ones = np.ones(mask.shape, np.uint8)
        item["mask"] = torch.from_numpy(ones if spec.ones_mask else mask.astype(np.uint8))
        item["text"] = self.texts[int(w.name_id[wid])]
        item["episode"] = self.names[r][int(w.episode[wid])]
        item["timestamp"] = torch.from_numpy(np.arange(int(w.start[wid]), int(w.start[wid]) + w.win_len * w.skip_frame,
                                                       w.skip_frame, dtype=np.int64))
        return item


def _keys_of(storage: Any) -> set[tuple[str, ...]]:
    return {c.key for c in storage.manifest.schema}


def _ms_dtype(values: np.ndarray, padded: bool) -> np.ndarray:
    """The dtype MineStudio's read gives: zeros padded in as uint8 promote the stored dtype."""
    return values.astype(np.result_type(values.dtype, np.uint8), copy=False) if padded else values


def _agent(env: Mapping[str, np.ndarray], camera: CameraQuantization) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in agent_action(env, camera).items()}


class _Session:
    """One ``EventWindowDataset``'s MineStudio items: item texts, and the items when its datasets allow them."""

    def __init__(self, spec: ItemSpec) -> None:
        self.spec = spec

    @staticmethod
    def texts(names: Sequence[str]) -> list[str]:
        return [n.replace("minecraft.", "") for n in names]

    def items(self, storages: Sequence[Any], windows: Any, texts: Sequence[str]) -> MineStudioItems | None:
        if self.spec.dataset_dirs is None and not all(map(is_minestudio_import, storages)):
            return None  # compat="minestudio" over other datasets: MineStudio's window rules, generic items
        return MineStudioItems(storages, windows, texts, self.spec)


class _Plugin:
    """The ``EventWindowDataset`` item plugin (entry point ``torchrl_ext.window_items``: ``minestudio``)."""

    name = "minestudio"
    options = MINESTUDIO_OPTIONS

    @staticmethod
    def start(options: dict[str, Any], roots: Any) -> tuple[Any, _Session]:
        spec = minestudio_spec(options, default=True)
        roots = minestudio_roots(spec, roots)
        if spec.dataset_dirs is not None:  # MineStudio's own call: its defaults
            options.setdefault("compat", "minestudio")
            options.setdefault("split", "train")
        return roots, _Session(spec)


WINDOW_ITEMS = _Plugin()
"""MineStudio 1.1.6 ``EventDataset`` arguments and items for :class:`~torchrl_ext.events.EventWindowDataset`."""
