"""``export_minari``: a dataset or a filtered view as a Minari 0.5 dataset, one episode at a time.

The episodes are handed to Minari's own storage (``MinariStorage.new`` and
``update_episodes`` with one ``EpisodeBuffer`` per episode, no jax), so the
files are Minari's: ``minari.load_dataset(dataset_id)``, with
``MINARI_DATASETS_PATH`` pointing at ``out_dir``, opens them. Frames are
stored raw (``jpeg_encoding=False``): every value read back equals ours.

Per episode of ``T`` steps: ``observations`` are the ``T`` stored observations
plus the final one (``("next", "observation")`` at the last step), ``actions``,
``rewards`` (``("next", "reward")``), ``terminations``, ``truncations`` and, for
``info/...`` columns, ``infos`` of ``T + 1`` values; the seed when the episode
table has a ``seed`` column. Spaces: the ones the dataset was imported with
(:func:`.importer.import_minari` keeps them in the manifest), else inferred
from the columns: nested keys -> ``Dict``, a scalar integer action ->
``Discrete(max + 1)``, uint8 frames -> ``Box(0, 255)``, other numbers ->
``Box`` over the dtype's range.
"""

from __future__ import annotations

import inspect
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ...export.selection import episodes_of
from ...format import Column, Key
from ...progress import track
from ...validation import one_of, user_path
from .layout import FORMATS, TEXT_FIELDS, datasets_root
from .spaces import leaves, parse_space, to_gymnasium

__all__ = ["export_minari", "inferred_space"]

_REQUIRED: tuple[Key, ...] = (("next", "reward"), ("next", "terminated"), ("next", "truncated"))


def _minari() -> Any:
    try:
        import minari
    except ImportError as err:
        raise ImportError(f"export_minari needs the minari package ({err}); pip install torchrl-ext[minari]") from err
    return minari


def _leaf_spec(col: Column, largest: int | None) -> dict[str, Any]:
    dtype = np.dtype(col.dtype)
    shape = list(col.shape)
    if largest is not None and not shape and dtype.kind in "iu":
        return {"type": "Discrete", "n": largest + 1, "start": 0}
    if dtype == np.uint8 and len(shape) >= 2:
        low, high = 0, 255
    elif dtype.kind == "f":
        low, high = "-inf", "inf"
    elif dtype.kind == "b":
        low, high = False, True
    else:
        info = np.iinfo(dtype)
        low, high = int(info.min), int(info.max)
    return {"type": "Box", "dtype": dtype.name, "shape": shape, "low": low, "high": high}


def inferred_space(columns: Mapping[Key, Column], prefix: str, largest: int | None = None) -> dict[str, Any]:
    """The space of the columns under ``prefix`` as :func:`.spaces.compact` JSON (nested keys -> ``Dict``).

    Args:
        columns: the dataset's columns by key.
        prefix: ``"observation"`` or ``"action"``.
        largest: the largest value of a scalar integer ``prefix`` column, which becomes ``Discrete``.
    """
    mine = {k[1:]: c for k, c in columns.items() if k[0] == prefix}
    if () in mine:
        return _leaf_spec(mine[()], largest)
    tree: dict[str, Any] = {}
    for key, col in mine.items():
        node = tree
        for part in key[:-1]:
            node = node.setdefault(part, {})
        node[key[-1]] = _leaf_spec(col, None)

    def as_dict(node: dict[str, Any]) -> dict[str, Any]:
        if "type" in node and isinstance(node["type"], str):
            return node
        return {"type": "Dict", "subspaces": {k: as_dict(v) for k, v in node.items()}}

    return as_dict(tree)


def _nested(spec: Mapping[str, Any], key: Key, values: Mapping[Key, np.ndarray]) -> Any:
    """Leaf arrays -> the values Minari expects for ``spec``: dicts for Dict, tuples for Tuple."""
    if spec["type"] == "Dict":
        return {name: _nested(sub, (*key, name), values) for name, sub in spec["subspaces"].items()}
    if spec["type"] == "Tuple":
        return tuple(_nested(sub, (*key, str(i)), values) for i, sub in enumerate(spec["subspaces"]))
    return values[key]


def _matches(spec: Any, prefix: str, columns: Mapping[Key, Column]) -> bool:
    try:
        found = {k: (leaf.dtype, leaf.shape) for k, leaf in leaves(parse_space(spec, "manifest", prefix), (prefix,))}
    except ValueError:
        return False
    return found == {k: (np.dtype(c.dtype).name, tuple(c.shape)) for k, c in columns.items() if k[0] == prefix}


class _Plan:
    """What one dataset's episodes become: the spaces and the columns read per episode."""

    def __init__(self, storage: Any, ids: np.ndarray) -> None:
        manifest = storage.reader.manifest
        self.columns = {c.key: c for c in manifest.schema}
        self.obs = [k for k in self.columns if k[0] == "observation"]
        self.actions = [k for k in self.columns if k[0] == "action"]
        self.infos = [k for k in self.columns if k[0] == "info"]
        missing = [k for k in (*_REQUIRED,) if k not in self.columns] + (["observation"] if not self.obs else []) \
            + (["action"] if not self.actions else [])
        if missing:
            raise ValueError(f"`source` has no column(s) {missing}; a Minari dataset needs observation, action, "
                             "('next', 'reward'), ('next', 'terminated') and ('next', 'truncated')")
        source = manifest.source
        self.source = source if source.get("kind") == "minari" else {}
        self.specs = {}
        for prefix, keys in (("observation", self.obs), ("action", self.actions)):
            spec = self.source.get(f"{prefix}_space")
            if spec is None or not _matches(spec, prefix, self.columns):
                largest = None
                if prefix == "action" and keys == [("action",)] and np.dtype(self.columns[keys[0]].dtype).kind in "iu":
                    largest = self._largest(storage, ids)
                spec = inferred_space(self.columns, prefix, largest)
            self.specs[prefix] = spec
        next_keys = set(map(tuple, manifest.next_from_row))
        self.final = [k for k in (*self.obs, *self.infos) if k in next_keys or ("next", *k) in self.columns]
        lacking = [k for k in self.obs if k not in self.final]
        if lacking:
            raise ValueError(f"`source` stores no next value of {lacking[:4]}, so the final observation is unknown; "
                             "Minari episodes hold T + 1 observations")
        self.keys = [*self.obs, *self.actions, *self.infos, *_REQUIRED, *(("next", *k) for k in self.final)]

    @staticmethod
    def _largest(storage: Any, ids: np.ndarray) -> int:
        first, length = storage.episode_bounds
        rows = np.concatenate([int(first[e]) + np.arange(int(length[e])) for e in ids.tolist()])
        actions = storage.reader.gather_column(("action",), rows)
        if actions.min() < 0:
            raise ValueError("`source` has negative integer actions; a Discrete space starts at 0 here: shift them "
                             "first (preprocess)")
        return int(actions.max())


def _buffers(storage: Any, ids: np.ndarray, plan: _Plan, seeds: list[Any], progress: bool) -> Iterator[Any]:
    from minari.data_collector import EpisodeBuffer

    first, length = storage.episode_bounds
    reader = storage.reader
    for e, seed in zip(track(ids.tolist(), "export minari", unit="episode", enabled=progress), seeds):
        rows = int(first[e]) + np.arange(int(length[e]), dtype=np.int64)
        got = reader.gather(rows, plan.keys)
        with_last = {k: np.concatenate([got[k], got[("next", *k)][-1:]]) for k in plan.final}
        values = {**got, **with_last}
        infos = None
        if plan.infos:
            infos = {}
            for key in plan.infos:
                node = infos
                for part in key[1:-1]:
                    node = node.setdefault(part, {})
                node[key[-1]] = values[key]
        yield EpisodeBuffer(
            seed=None if seed is None else int(seed),
            observations=_nested(plan.specs["observation"], ("observation",), values),
            actions=_nested(plan.specs["action"], ("action",), values),
            rewards=got[("next", "reward")].reshape(-1),
            terminations=got[("next", "terminated")].reshape(-1).astype(bool),
            truncations=got[("next", "truncated")].reshape(-1).astype(bool),
            infos=infos)


def export_minari(source: Any, dataset_id: str, *, out_dir: str | os.PathLike | None = None,
                  data_format: str = "hdf5", author: str | None = None, algorithm_name: str | None = None,
                  code_permalink: str | None = None, description: str | None = None, progress: bool = False) -> Path:
    """Writes the episodes of ``source`` as the Minari dataset ``dataset_id``.

    Args:
        source: dataset directory, :class:`~torchrl_ext.ShardedStorage` or
            :class:`~torchrl_ext.storages.EpisodeView` (only its episodes).
        dataset_id: Minari's ``(namespace/)name-v<N>``.
        out_dir: Minari's datasets directory to write into (default: ``$MINARI_DATASETS_PATH``,
            else ``~/.minari/datasets``); the dataset is ``out_dir/<dataset_id>``.
        data_format: Minari's backend, ``"hdf5"``, ``"arrow"`` or ``"parquet"``.
        author, algorithm_name, code_permalink, description: Minari's metadata
            (default: what a Minari import recorded, if anything).
        progress: show a progress bar.

    Returns:
        The Minari dataset's directory.

    Raises:
        ImportError: minari is not installed.
        ValueError: a malformed ``dataset_id``, a dataset there already, no episode, or missing columns.
    """
    minari = _minari()
    from minari.dataset.minari_dataset import parse_dataset_id
    from minari.dataset.minari_storage import MinariStorage

    if not isinstance(dataset_id, str):
        raise TypeError(f"`dataset_id` must be a str like 'namespace/name-v0', got {type(dataset_id).__name__}")
    try:
        parse_dataset_id(dataset_id)
    except ValueError:
        raise ValueError(f"`dataset_id` must look like '(namespace/)name-v<N>', got {dataset_id!r}") from None
    one_of(data_format, "data_format", FORMATS)
    storage, ids = episodes_of(source)
    if len(ids) == 0:
        raise ValueError("`source` selects no episode; loosen the filter")
    target = (user_path(out_dir, "out_dir") if out_dir is not None else datasets_root()) / dataset_id
    if target.exists():
        raise ValueError(f"{target} exists: Minari never overwrites a dataset; choose another `dataset_id` or "
                         "delete it")
    plan = _Plan(storage, ids)
    table = storage.episode_table()
    try:
        seeds = ([v for (v,) in table.values(("seed",), ids)] if "seed" in table.metadata_columns()
                 else [None] * len(ids))
    finally:
        table.close()
    meta: dict[str, Any] = {"dataset_id": dataset_id, "minari_version": minari.__version__}
    given = {"algorithm_name": algorithm_name, "code_permalink": code_permalink, "description": description}
    for name in ("algorithm_name", "code_permalink", "description", "env_spec", "eval_env_spec"):
        value = given.get(name) or (plan.source.get(name) if name in TEXT_FIELDS else None)
        if value is not None:
            meta[name] = value
    authors = [author] if author else plan.source.get("author")
    if authors:
        meta["author"] = set(authors)
    (target / "data").parent.mkdir(parents=True, exist_ok=True)
    try:
        raw_frames = {"jpeg_encoding": False} if "jpeg_encoding" in inspect.signature(MinariStorage.new).parameters \
            else {}  # Minari 0.5.4 stores frames as JPEG unless told not to
        writer = MinariStorage.new(target / "data", observation_space=to_gymnasium(plan.specs["observation"]),
                                   action_space=to_gymnasium(plan.specs["action"]), data_format=data_format,
                                   **raw_frames)
        writer.update_metadata(meta)
        writer.update_episodes(_buffers(storage, ids, plan, seeds, progress))
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return target
