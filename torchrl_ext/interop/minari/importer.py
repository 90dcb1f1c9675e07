"""A local Minari dataset -> a sharded dataset, one episode at a time, resumable.

Each Minari episode of ``T`` steps becomes one episode in TorchRL's TED layout:

* ``observation`` (one leaf per column: a Dict entry is a nested key, a Tuple
  item the key ``"0"``, ``"1"``, ..., see :mod:`.spaces`): ``observations[:T]``;
  ``("next", "observation")``: ``observations[1:]``, stored once, so the
  episode's final observation is kept;
* ``action``: the actions, nested the same way (Discrete: int64);
* ``("next", "reward")`` (float32 ``[T, 1]``; Minari's float64 rewards are
  rounded to float32), ``("next", "terminated")``, ``("next", "truncated")``
  and ``("next", "done")`` = terminated | truncated (bool ``[T, 1]``);
* ``info/<key>``: each info that is an array of numbers per step (Minari stores
  ``T + 1``, the reset's first) as ``info[t]`` = ``infos[t]`` and
  ``("next", "info", ...)`` = ``infos[t + 1]``; any other info is dropped, with
  one log line per key.

Episode metadata: ``episode_id`` (Minari's episode index) and ``seed`` when
Minari stored one. The manifest's ``source`` holds the dataset's
description (:meth:`.layout.MinariSource.manifest_source`: dataset_id,
env_spec, algorithm_name, author, code_permalink, minari_version, the spaces,
and ``lossy``: the leaves Minari kept as JPEG, imported as decoded frames).

Frames (uint8 observation leaves ``[H, W]`` or ``[H, W, C]``, H and W >= 16)
are stored as lossless zstd chunks by default (:data:`FRAME_ENCODING`); pass
``encodings`` to choose (e.g. ``{("observation", "image"): "video"}``, or
``{}`` for raw memory-mapped columns).

Resuming: a dataset holding ``M`` committed episodes of the same import holds
Minari's episodes ``0 .. M - 1``; running the import again appends the rest.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ...format import MANIFEST_NAME, FormatError, Key, read_manifest
from ...progress import ProgressBar
from ...validation import user_path
from .layout import MinariSource
from .spaces import key_name
from .values import RawEpisode

__all__ = ["FRAME_ENCODING", "IMPORTER_VERSION", "episode_columns", "frame_encodings", "import_minari",
           "open_episodes"]

logger = logging.getLogger(__name__)

IMPORTER_VERSION = 1
FRAME_ENCODING: dict[str, Any] = {"name": "zstd", "level": 3}
"""Lossless zstd, level 3, 16-row chunks: frames stay cheap to read at random and to slice."""


def frame_encodings(source: MinariSource, encoding: Any = FRAME_ENCODING) -> dict[Key, Any]:
    """``{key: encoding}`` for the frame leaves of ``source`` (:meth:`.layout.MinariSource.image_keys`)."""
    return {key: encoding for key in source.image_keys()}


def open_episodes(source: MinariSource) -> Any:
    """The episode reader of the dataset's backend: ``read(i) -> RawEpisode`` and ``close()``."""
    if source.data_format == "hdf5":
        from .hdf5_episodes import HDF5Episodes

        return HDF5Episodes(source)
    from .arrow_episodes import ArrowEpisodes

    return ArrowEpisodes(source)


def _nest(columns: Mapping[Key, np.ndarray], rows: slice) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in columns.items():
        node = out
        for part in key[:-1]:
            node = node.setdefault(part, {})
        node[key[-1]] = value[rows]
    return out


def episode_columns(ep: RawEpisode, infos: Sequence[Key] | None = None) -> dict[str, Any]:
    """One Minari episode as a nested dict of arrays in TED layout (see the module's docstring).

    Args:
        ep: the episode as read.
        infos: the info keys to keep (default: every info the episode holds).
    """
    t = ep.steps
    kept = {k: v for k, v in ep.infos.items() if infos is None or k in infos}
    now, nxt = _nest({**ep.observations, **kept}, slice(0, t)), _nest({**ep.observations, **kept}, slice(1, t + 1))
    term, trunc = ep.terminations[:, None], ep.truncations[:, None]
    td: dict[str, Any] = {**now, **_nest(ep.actions, slice(0, t))}
    td["next"] = {**nxt, "reward": ep.rewards[:, None].astype(np.float32), "terminated": term, "truncated": trunc,
                  "done": term | trunc}
    return td


class _Infos:
    """Which infos become columns: those of the first episode imported (or of the schema when resuming)."""

    def __init__(self, stored: list[Key] | None, keep: bool) -> None:
        self.keys = stored
        self.keep = keep
        self.noted: set[Key] = set()

    def select(self, ep: RawEpisode, where: str) -> list[Key]:
        if not self.keep:
            return []
        for key, why in ep.dropped.items():
            self._note(key, f"dropped: {why}; only arrays of numbers per step are kept", where)
        if self.keys is None:
            self.keys = sorted(ep.infos)
        missing = [key_name(k) for k in self.keys if k not in ep.infos]
        if missing:
            raise FormatError(f"{where}: has no info {missing[:4]}, which earlier episodes have; import with "
                              "infos=False to leave infos out")
        for key in set(ep.infos) - set(self.keys):
            self._note(key, "dropped: earlier episodes do not have it", where)
        return self.keys

    def _note(self, key: Key, message: str, where: str) -> None:
        if key not in self.noted:
            self.noted.add(key)
            logger.info("%s: info %s %s", where, key_name(key), message)


def _open_writer(root: Any, source: dict[str, Any], encodings: Any, shard_rows: int | None) -> Any:
    from ...writer import ShardWriter

    if not (root / MANIFEST_NAME).exists():
        return ShardWriter.create(root, shard_rows=shard_rows, source=source, encodings=encodings)
    found = read_manifest(root).source
    if found != source:
        raise ValueError(f"`root` {root} holds a dataset imported from {found.get('path', found.get('kind'))!r}, not "
                         f"from {source['path']!r} as it is now (or that dataset changed); choose a new `root`")
    return ShardWriter.open(root)


def import_minari(source: str | os.PathLike, root: str | os.PathLike, *,
                  encodings: Mapping[str | Sequence[str], Any] | None = None, infos: bool = True,
                  shard_rows: int | None = None, progress: bool = True) -> Any:
    """Imports a local Minari dataset (HDF5, Arrow or Parquet backend) into a new or partly imported dataset.

    Args:
        source: a Minari dataset id (found in ``$MINARI_DATASETS_PATH``, else
            ``~/.minari/datasets``), or the dataset's directory (or its ``data/``).
        root: dataset directory to write; an interrupted import there resumes.
        encodings: ``{key: encoding}`` as :meth:`torchrl_ext.ShardWriter.create`
            takes it (default: frame leaves as :data:`FRAME_ENCODING`, the rest raw).
        infos: keep infos that are arrays of numbers per step as ``info/...`` columns.
        shard_rows: rows per shard (default: 256 MiB of raw rows).
        progress: show a progress bar (episodes).

    Returns:
        A :class:`~torchrl_ext.ShardedStorage` over ``root``.

    Raises:
        FileNotFoundError: no Minari dataset at ``source``.
        FormatError: a damaged or hostile Minari file, naming it.
        ValueError: a Text space, or ``root`` holds another dataset.
        ImportError: h5py, pyarrow or Pillow is missing (``pip install torchrl-ext[minari]``).
    """
    from ...storages import ShardedStorage

    src = MinariSource.find(source)
    root = user_path(root, "root")
    described = {**src.manifest_source(), "importer_version": IMPORTER_VERSION}
    chosen = frame_encodings(src) if encodings is None else encodings
    reader = open_episodes(src)
    try:
        writer = _open_writer(root, described, chosen, shard_rows)
        with writer:
            start = writer.num_episodes
            stored = sorted(c.key[1:] for c in read_manifest(root).schema if c.key[0] == "info") if start else None
            plan = _Infos([("info", *k) for k in stored] if stored is not None else None, infos)
            if start:
                logger.info("%s: resuming; %d of %d episodes are already imported", root, start, src.total_episodes)
            with ProgressBar("import minari", src.total_episodes, unit="episode", initial=start,
                             enabled=progress) as bar:
                for index in range(start, src.total_episodes):
                    ep = reader.read(index)
                    where = f"{src.episode_file(index)} episode {index}"
                    td = episode_columns(ep, plan.select(ep, where))
                    metadata: dict[str, Any] = {"episode_id": index}
                    if ep.seed is not None:
                        metadata["seed"] = ep.seed
                    try:
                        writer.add_episode(td, metadata)
                    except (ValueError, TypeError) as err:
                        if isinstance(err, FormatError):
                            raise
                        raise FormatError(f"{where}: does not fit the episodes imported before it ({err})") from err
                    bar.update(1, steps=ep.steps)
    finally:
        reader.close()
    return ShardedStorage(root)
