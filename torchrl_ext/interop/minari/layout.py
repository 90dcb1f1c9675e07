"""Minari 0.5's local dataset layout: where a dataset lives, its ``metadata.json``, its spaces and episodes.

A dataset id ``(namespace/)name(-vN)`` lives in ``$MINARI_DATASETS_PATH/<id>/``
(default ``~/.minari/datasets/<id>/``), its files under ``data/``::

    data/metadata.json        JSON object: total_episodes, total_steps, data_format ("hdf5", "arrow" or
                              "parquet"), jpeg_encoding (written since 0.5.4; absent: frames stored raw),
                              observation_space, action_space (serialized spaces, see .spaces), dataset_id,
                              env_spec / eval_env_spec (gymnasium EnvSpec JSON), algorithm_name, author,
                              author_email, code_permalink, description, minari_version, ...
    hdf5:                     data/main_data.hdf5: one group episode_<i> per episode (.hdf5_episodes)
    arrow / parquet:          data/<i>/part-<k>.arrow (.parquet): one directory per episode; its rows are the
                              T + 1 steps, actions and rewards padded by one (.arrow_episodes);
                              data/<i>/metadata.json: {"id", "total_steps", "seed"?, "options"?}

Episodes are numbered ``0 .. total_episodes - 1`` (Minari's ``iterate_episodes``
order). An episode of ``T`` steps holds ``T + 1`` observations and infos
(the reset's, then each step's) and ``T`` actions, rewards, terminations and
truncations. Image leaves (:attr:`.spaces.Space.image`) are JPEG bytes per
frame when ``jpeg_encoding`` is true.

Every file is opened (:func:`torchrl_ext.format.open_regular`, :func:`~torchrl_ext.format.files.open_inside`) without
following a symlink, so a link, FIFO or device is refused before it is read;
``metadata.json`` files are read up to :data:`MAX_JSON_BYTES`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...format import FormatError
from ...format.files import read_json_object
from ...validation import user_path
from .spaces import Space, compact, key_name, leaves, parse_space

__all__ = ["FORMATS", "HDF5_NAME", "MAX_JSON_BYTES", "METADATA_NAME", "MinariSource", "datasets_root", "read_json"]

logger = logging.getLogger(__name__)

METADATA_NAME = "metadata.json"
HDF5_NAME = "main_data.hdf5"
FORMATS = ("hdf5", "arrow", "parquet")
MAX_JSON_BYTES = 64 << 20
MAX_TEXT_CHARS = 1 << 16  # a metadata text longer than this is left out of the manifest
TEXT_FIELDS = ("dataset_id", "env_spec", "eval_env_spec", "algorithm_name", "code_permalink", "description",
               "minari_version")
SET_FIELDS = ("author", "author_email")


def datasets_root() -> Path:
    """Where Minari keeps local datasets: ``$MINARI_DATASETS_PATH``, else ``~/.minari/datasets``."""
    path = os.environ.get("MINARI_DATASETS_PATH")
    return Path(path) if path else Path.home() / ".minari" / "datasets"


def read_json(path: Path) -> Any:
    """A JSON object of the Minari dataset: a regular file (no symlink) of at most :data:`MAX_JSON_BYTES`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FormatError: a symlink, not a regular file, too large, or not a JSON object.
    """
    return read_json_object(path.parent, path, max_bytes=MAX_JSON_BYTES, expected="a Minari metadata file")


def _data_dir(name_or_dir: str | os.PathLike) -> Path:
    path = user_path(name_or_dir, "source")
    for cand in (path, path / "data"):
        if cand.is_dir() and (cand / METADATA_NAME).exists():
            return cand
    name = os.fspath(name_or_dir)
    if not Path(name).is_absolute() and ".." not in Path(name).parts:
        found = datasets_root() / name / "data"
        if (found / METADATA_NAME).exists():
            return found
    if path.is_dir():
        raise FileNotFoundError(f"`source` {path} holds no {METADATA_NAME} (nor data/{METADATA_NAME}); expected "
                                "a Minari dataset directory")
    raise FileNotFoundError(f"`source` {name!r}: no Minari dataset at {datasets_root() / name}; download it with "
                            f"`minari download {name}`, set MINARI_DATASETS_PATH, or pass its directory")


@dataclass(frozen=True)
class MinariSource:
    """A local Minari dataset: its ``data/`` directory, checked metadata and spaces.

    Attributes:
        data_dir: the resolved ``data/`` directory.
        metadata: ``metadata.json`` as read.
        data_format: ``"hdf5"``, ``"arrow"`` or ``"parquet"``.
        total_episodes: episodes ``0 .. total_episodes - 1``.
        observation, action: the checked spaces.
        jpeg: whether image leaves are stored as JPEG bytes.
    """

    data_dir: Path
    metadata: dict[str, Any]
    data_format: str
    total_episodes: int
    observation: Space
    action: Space
    jpeg: bool

    @classmethod
    def find(cls, name_or_dir: str | os.PathLike) -> MinariSource:
        """The dataset at a directory (the dataset's or its ``data/``) or under a dataset id.

        Raises:
            FileNotFoundError: no Minari dataset there.
            FormatError: a damaged ``metadata.json``.
            ValueError: a space holds ``Text``, which has no numeric column.
        """
        data_dir = _data_dir(name_or_dir).resolve()
        where = data_dir / METADATA_NAME
        meta = read_json(where)
        if not isinstance(meta, dict):
            raise FormatError(f"{where}: holds a JSON {type(meta).__name__}, expected an object")
        fmt = meta.get("data_format")
        if fmt not in FORMATS:
            raise FormatError(f"{where}: data_format is {fmt!r:.40}, expected one of {FORMATS}")
        total = meta.get("total_episodes")
        if type(total) is not int or total < 0:
            raise FormatError(f"{where}: total_episodes is {total!r:.40}, expected an int >= 0")
        spaces = {}
        for name in ("observation", "action"):
            if f"{name}_space" not in meta:
                raise FormatError(f"{where}: has no {name}_space; datasets written before Minari 0.4 are not "
                                  "supported (load and save it again with Minari 0.5)")
            spaces[name] = parse_space(meta[f"{name}_space"], str(where), name)
            for key, leaf in leaves(spaces[name], (name,)):
                if leaf.kind == "Text":
                    raise ValueError(f"{where}: {key_name(key)} is a Text space; a dataset stores numbers only: "
                                     "map it to token ids with Minari first, or import a dataset without it")
        jpeg = meta.get("jpeg_encoding", False)
        if not isinstance(jpeg, bool):
            raise FormatError(f"{where}: jpeg_encoding is {jpeg!r:.40}, expected true or false")
        return cls(data_dir, meta, fmt, total, spaces["observation"], spaces["action"], jpeg)

    def image_keys(self) -> list[tuple[str, ...]]:
        """Keys of the observation leaves that are frames: uint8 ``[H, W]`` or ``[H, W, C]`` with H, W >= 16."""
        return [key for key, leaf in leaves(self.observation, ("observation",))
                if leaf.dtype == "uint8" and len(leaf.shape) in (2, 3) and min(leaf.shape[:2]) >= 16]

    def jpeg_keys(self) -> list[tuple[str, ...]]:
        """Keys of the leaves Minari stored as JPEG (lossy): its image leaves when ``jpeg_encoding`` is on."""
        if not self.jpeg:
            return []
        return [key for name, space in (("observation", self.observation), ("action", self.action))
                for key, leaf in leaves(space, (name,)) if leaf.image]

    def manifest_source(self) -> dict[str, Any]:
        """What the dataset's manifest records about where it came from (see :func:`.importer.import_minari`)."""
        meta = self.metadata
        out: dict[str, Any] = {"kind": "minari", "path": str(self.data_dir), "data_format": self.data_format,
                               "total_episodes": self.total_episodes}
        if type(meta.get("total_steps")) is int:
            out["total_steps"] = meta["total_steps"]
        for name in TEXT_FIELDS:
            value = meta.get(name)
            if isinstance(value, str) and len(value) <= MAX_TEXT_CHARS:
                out[name] = value
            elif value is not None:
                logger.info("%s: %s left out of the manifest (%s, not a text of at most %d characters)",
                            self.data_dir / METADATA_NAME, name, type(value).__name__, MAX_TEXT_CHARS)
        for name in SET_FIELDS:
            value = meta.get(name)
            if isinstance(value, list) and all(isinstance(v, str) and len(v) <= MAX_TEXT_CHARS for v in value):
                out[name] = sorted(value)[:100]
        out["observation_space"] = compact(self.observation)
        out["action_space"] = compact(self.action)
        out["lossy"] = {key_name(k): "jpeg" for k in self.jpeg_keys()}
        return out

    def episode_file(self, episode: int) -> Path:
        """The file (hdf5) or directory (arrow, parquet) holding ``episode``."""
        return self.data_dir / (HDF5_NAME if self.data_format == "hdf5" else str(episode))
