"""MineStudio 1.1.6's LMDB environments: one per modality part, read without trusting their bytes.

A converted MineStudio dataset directory holds one folder per modality
(``image`` or ``video``, ``action``, ``meta_info`` or ``contractor_info``,
``segment`` or ``segmentation``) and an ``event`` environment. A modality
folder holds parts ``part-<N>/``, each one LMDB environment written by
``minestudio/data/minecraft/tools/convertion.py`` (``ConvertWorker.run``):

``__chunk_size__``
    pickled int: frames per chunk (32).
``__chunk_infos__``
    pickled list of ``{"episode": str, "episode_idx": int, "num_frames": int}``;
    ``episode_idx`` counts the part's episodes from 0, ``num_frames`` is a
    multiple of the chunk size (the converters drop a shorter tail).
``__num_episodes__``, ``__num_total_frames__``
    pickled ints.
``str((episode_idx, chunk_start)).encode()``
    one chunk of ``chunk_size`` frames starting at frame ``chunk_start`` (a
    multiple of the chunk size). Keys sort as strings (``(1, 128)`` before
    ``(1, 32)``), so chunks are looked up by computed key, never by cursor order.

Values are pickles (loaded only through :mod:`torchrl_ext.sources.safe_pickle`)
or, for images, complete mp4 files. LMDB memory-maps its file and a truncated
``data.mdb`` would crash the process on access, so the file's size is checked
against its meta pages before an environment is opened. With ``lmdb`` 3.x an
environment may be open only once per process: :func:`open_env` keeps one
read-only handle per path and process, shared by every reader.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...format import FormatError, open_regular
from ...sources.safe_pickle import safe_loads

__all__ = ["PartInfo", "ChunkInfo", "open_env", "close_envs", "read_part", "read_value", "chunk_key",
           "check_lmdb_file"]

META_KEYS = ("__chunk_size__", "__chunk_infos__", "__num_episodes__", "__num_total_frames__")
_LMDB_MAGIC = 0xBEEFC0DE
_META_PAGE = struct.Struct("<QHHHH")  # page header: pgno, pad, flags, lower, upper
_ENVS: dict[tuple[int, str], Any] = {}


def _lmdb() -> Any:
    try:
        import lmdb
    except ImportError as err:
        raise ImportError(
            f"reading MineStudio datasets needs the 'lmdb' package ({err}); pip install torchrl-ext[minestudio]"
        ) from err
    return lmdb


def check_lmdb_file(path: str | os.PathLike) -> None:
    """``FormatError`` unless ``path/data.mdb`` is an LMDB file holding every page its meta pages list.

    Raises:
        FormatError: missing, not a regular file, not LMDB (bad magic or page size), or truncated.
    """
    data_path = Path(path) / "data.mdb"
    fix = "copy the dataset again or re-run MineStudio's conversion for this part"
    try:
        with open_regular(data_path) as f:  # a FIFO or device is refused before LMDB could map or read it
            head = f.read(16 + 160)
            size = os.fstat(f.fileno()).st_size
            magic, _version = struct.unpack_from("<II", head, 16) if len(head) >= 24 else (0, 0)
            psize = struct.unpack_from("<I", head, 40)[0] if len(head) >= 44 else 0
            if magic != _LMDB_MAGIC or psize < 512 or psize & (psize - 1):
                raise FormatError(f"{data_path}: not an LMDB file (magic {magic:#x}, expected {_LMDB_MAGIC:#x}); {fix}")
            metas = []
            for page in (0, 1):
                f.seek(page * psize)
                raw = f.read(160)
                if len(raw) < 152 or struct.unpack_from("<I", raw, 16)[0] != _LMDB_MAGIC:
                    raise FormatError(f"{data_path}: LMDB meta page {page} is missing or damaged; {fix}")
                last_pg, txnid = struct.unpack_from("<QQ", raw, 136)
                metas.append((txnid, last_pg))
    except FileNotFoundError:
        raise FormatError(f"{data_path}: missing; expected an LMDB environment written by MineStudio; {fix}") from None
    _txn, last_pg = max(metas)
    need = (last_pg + 1) * psize
    if size < need:
        raise FormatError(
            f"{data_path}: LMDB file is truncated: its meta page lists {last_pg + 1} pages of {psize} bytes "
            f"({need} bytes), found {size}; {fix}"
        )


def open_env(path: str | os.PathLike) -> Any:
    """The read-only ``lmdb.Environment`` at ``path``, opened once per process and shared.

    Raises:
        FormatError: when the environment is missing, truncated or not LMDB.
    """
    key = (os.getpid(), os.path.realpath(path))
    env = _ENVS.get(key)
    if env is None:
        check_lmdb_file(path)
        lmdb = _lmdb()
        try:
            env = lmdb.open(str(path), readonly=True, lock=False, max_readers=128, readahead=False)
        except lmdb.Error as err:
            raise FormatError(f"{path}: cannot open the LMDB environment ({err}); the part is damaged") from err
        _ENVS[key] = env
    return env


def close_envs() -> None:
    """Closes every environment this process opened with :func:`open_env`."""
    for key in [k for k in _ENVS if k[0] == os.getpid()]:
        _ENVS.pop(key).close()


def read_value(env: Any, key: bytes, where: str) -> bytes:
    """The bytes stored under ``key``; ``FormatError`` naming ``where`` when absent."""
    lmdb = _lmdb()
    try:
        with env.begin(buffers=False) as txn:
            value = txn.get(key)
    except lmdb.Error as err:
        raise FormatError(f"{where}: reading {key!r} failed ({err}); the LMDB environment is damaged") from err
    if value is None:
        raise FormatError(f"{where}: key {key.decode(errors='replace')!r} is missing; the part is incomplete")
    return value


def chunk_key(episode_idx: int, chunk_start: int) -> bytes:
    """The key of a chunk, as MineStudio writes it.

    >>> chunk_key(1, 32)
    b'(1, 32)'
    """
    return str((int(episode_idx), int(chunk_start))).encode()


@dataclass(frozen=True)
class ChunkInfo:
    """One episode of a part: its name, its index inside the part and its frames."""

    episode: str
    episode_idx: int
    num_frames: int


@dataclass(frozen=True)
class PartInfo:
    """The metadata of one part (one LMDB environment)."""

    path: Path
    chunk_size: int
    episodes: tuple[ChunkInfo, ...]

    @property
    def env(self) -> Any:
        return open_env(self.path)


def _int(value: Any, what: str, where: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise FormatError(f"{where}: {what} must be an int >= {minimum}, found {value!r}; the part is damaged")
    return value


def read_part(path: str | os.PathLike) -> PartInfo:
    """Reads and checks the metadata keys of one part.

    Raises:
        FormatError: a missing key, a value of the wrong type, episode counts
            that disagree, or a frame count that is not a multiple of the chunk size.
    """
    path = Path(path)
    where = str(path)
    env = open_env(path)
    meta = {k: safe_loads(read_value(env, k.encode(), where), f"{where} [{k}]") for k in META_KEYS}
    chunk_size = _int(meta["__chunk_size__"], "__chunk_size__", where, 1)
    infos = meta["__chunk_infos__"]
    if not isinstance(infos, list):
        raise FormatError(f"{where}: __chunk_infos__ must be a list, found {type(infos).__name__}; the part is damaged")
    episodes = []
    for i, info in enumerate(infos):
        if not isinstance(info, dict) or not isinstance(info.get("episode"), str):
            raise FormatError(f"{where}: __chunk_infos__[{i}] must be a dict with an 'episode' name, found {info!r}")
        frames = _int(info.get("num_frames"), f"__chunk_infos__[{i}]['num_frames']", where)
        if frames % chunk_size:
            raise FormatError(
                f"{where}: episode {info['episode']!r} has {frames} frames, not a multiple of the chunk size "
                f"{chunk_size}; the part is damaged"
            )
        idx = _int(info.get("episode_idx"), f"__chunk_infos__[{i}]['episode_idx']", where)
        episodes.append(ChunkInfo(info["episode"], idx, frames))
    n = _int(meta["__num_episodes__"], "__num_episodes__", where)
    if n != len(episodes):
        raise FormatError(f"{where}: __num_episodes__ is {n} but __chunk_infos__ lists {len(episodes)} episodes")
    return PartInfo(path, chunk_size, tuple(episodes))
