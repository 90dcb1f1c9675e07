"""Episodes of Minari's HDF5 backend (``data/main_data.hdf5``), read one at a time, defensively.

The file (``minari/dataset/_storages/hdf5_storage.py``) holds one group per
episode, ``episode_<i>``, with attributes ``id``, ``total_steps`` and
optionally ``seed`` (and ``options/...``)::

    episode_<i>/observations    a dataset [T + 1, *shape] for a Box/Discrete/Multi* space; a group for a
                                Dict (one member per entry) or a Tuple (members _index_0, _index_1, ...);
                                an image leaf under jpeg_encoding: JPEG bytes per frame, a variable-length
                                uint8 dataset [T + 1] (or [T + 1, n] uint8 when every frame has n bytes)
    episode_<i>/actions         the same for the action space, [T, ...]
    episode_<i>/rewards         [T] numbers;  terminations, truncations: [T] bools
    episode_<i>/infos           optional group: one dataset (or group) per info key, [T + 1, ...] per step

Defences: the file is opened through :func:`~torchrl_ext.format.open_regular`
(no symlink, regular files only) and handed to h5py as a file object; every
member is reached through a hard link (soft and external links refused), must
be a plain dataset (not virtual, no external storage), and its shape and dtype
are checked against the space before a byte is read, so a read allocates at
most what the space and the episode's step count allow. Object dtypes are
refused except the variable-length uint8 of JPEG frames.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Self

import numpy as np

from ...format import FormatError, Key, open_regular
from .layout import HDF5_NAME, MinariSource
from .spaces import Space
from .values import (
    RawEpisode,
    check_leaf,
    decode_jpeg,
    info_array,
    leaf_array,
    step_flags,
    step_rewards,
)

__all__ = ["HDF5Episodes", "load_h5py"]

_EPISODE = re.compile(r"episode_(0|[1-9][0-9]{0,17})")
_READ_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError)


def load_h5py() -> Any:
    try:
        import h5py
    except ImportError as err:
        raise ImportError(f"reading Minari's HDF5 datasets needs h5py ({err}); pip install torchrl-ext[minari]"
                          ) from err
    return h5py


class HDF5Episodes:
    """Reads episode ``i`` of a Minari HDF5 dataset on demand; one open file, closed by :meth:`close`.

    Raises:
        FormatError: the file is missing its episodes, damaged, truncated, or not HDF5 (naming the file).
    """

    def __init__(self, source: MinariSource) -> None:
        self.h5py = load_h5py()
        self.source = source
        self.path: Path = source.data_dir / HDF5_NAME
        self._raw = open_regular(self.path, follow=False)
        try:
            self._file = self.h5py.File(self._raw, "r")
            names = list(self._file.keys())
        except _READ_ERRORS as err:
            self._raw.close()
            raise FormatError(f"{self.path}: not a readable HDF5 file ({type(err).__name__}: {err}); the file is "
                              "truncated or damaged") from None
        ids = sorted(int(m.group(1)) for n in names if (m := _EPISODE.fullmatch(n)))
        if len(ids) != len(names) or ids != list(range(source.total_episodes)):
            self.close()
            raise FormatError(f"{self.path}: holds {len(names)} groups ({', '.join(sorted(names)[:4])}...), "
                              f"expected episode_0 .. episode_{source.total_episodes - 1} as metadata.json says "
                              f"({source.total_episodes} episodes); the dataset is incomplete or damaged")

    def close(self) -> None:
        file = getattr(self, "_file", None)
        if file is not None:
            file.close()
        self._raw.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ members
    def _member(self, group: Any, name: str, where: str) -> Any:
        h5py = self.h5py
        link = group.get(name, getlink=True)
        if link is None:
            raise FormatError(f"{where}: has no {name!r}; a Minari episode holds observations, actions, rewards, "
                              "terminations and truncations")
        if not isinstance(link, h5py.HardLink):
            raise FormatError(f"{where}/{name}: is a link ({type(link).__name__}), expected the data itself; the "
                              "file was not written by Minari")
        return group[name]

    def _dataset(self, group: Any, name: str, where: str) -> Any:
        ds = self._member(group, name, where)
        if not isinstance(ds, self.h5py.Dataset):
            raise FormatError(f"{where}/{name}: is a {type(ds).__name__}, expected a dataset")
        if ds.shape is None or ds.is_virtual or ds.external:
            raise FormatError(f"{where}/{name}: is an empty, virtual or externally stored dataset; the file was not "
                              "written by Minari")
        return ds

    def _small(self, group: Any, name: str, steps: int, where: str) -> Any:
        """A per-step dataset ``[T]`` (or ``[T, 1]``) of numbers: rewards, terminations, truncations."""
        ds = self._dataset(group, name, where)
        if ds.shape not in ((steps,), (steps, 1)) or ds.dtype.hasobject:
            raise FormatError(f"{where}/{name}: holds {ds.dtype} of shape {ds.shape}, expected {max(steps, 0)} "
                              "numbers, one per step; the file was not written by Minari, or is damaged")
        return ds

    def _leaf(self, group: Any, name: str, leaf: Space, rows: int, where: str, key: Key, jpeg: bool) -> np.ndarray:
        h5py = self.h5py
        ds = self._dataset(group, name, where)
        dt = ds.dtype
        if jpeg:  # JPEG bytes per frame: vlen uint8 [rows], or uint8 [rows, n] when all frames have n bytes
            vlen = h5py.check_vlen_dtype(dt)
            if (vlen is not None and np.dtype(vlen) == np.uint8 and ds.shape == (rows,)) or (
                    dt == np.uint8 and len(ds.shape) == 2 and ds.shape[0] == rows
                    and ds.shape[1] <= 2 * int(np.prod(leaf.shape)) + (1 << 16)):  # a JPEG is never that large
                return decode_jpeg(ds[()], leaf, rows, f"{where}/{name}", key)
            raise FormatError(f"{where}/{name}: holds {dt} of shape {ds.shape}, expected {rows} JPEG frames "
                              "(jpeg_encoding is on); the file does not match its metadata.json")
        if dt.hasobject or dt.kind not in "biuf":
            raise FormatError(f"{where}/{name}: has dtype {h5py.check_vlen_dtype(dt) or dt} "
                              f"({'object' if dt.hasobject else dt.kind}), expected {leaf.dtype} numbers; the file "
                              "was not written by Minari, or is damaged")
        check_leaf(ds.shape, dt, leaf, rows, f"{where}/{name}", key)  # before reading: what the space allows
        return leaf_array(ds[()], leaf, rows, f"{where}/{name}", key)

    def _space(self, group: Any, name: str, space: Space, rows: int, where: str, key: Key, jpeg: set[Key],
               out: dict[Key, np.ndarray]) -> None:
        if space.kind not in ("Dict", "Tuple"):
            out[key] = self._leaf(group, name, space, rows, where, key, key in jpeg)
            return
        sub = self._member(group, name, where)
        if not isinstance(sub, self.h5py.Group):
            raise FormatError(f"{where}/{name}: is a dataset, expected a group for its {space.kind} space")
        stored = {(f"_index_{c}" if space.kind == "Tuple" else c): c for c, _ in space.children}
        if set(sub.keys()) != set(stored):
            raise FormatError(f"{where}/{name}: holds {sorted(sub.keys())[:8]}, its {space.kind} space has "
                              f"{sorted(stored)[:8]}; the file does not match its metadata.json")
        children = dict(space.children)
        for member, child in stored.items():
            self._space(sub, member, children[child], rows, f"{where}/{name}", (*key, child), jpeg, out)

    def _infos(self, group: Any, rows: int, where: str, prefix: Key, ep: RawEpisode) -> None:
        h5py = self.h5py
        for name in group:
            key = (*prefix, name)
            if not 0 < len(name) <= 128 or not name.isprintable() or name in (".", ".."):
                ep.dropped[key] = "a name that is not 1 to 128 printable characters"
                continue
            obj = self._member(group, name, where)
            if isinstance(obj, h5py.Group):
                self._infos(obj, rows, f"{where}/{name}", key, ep)
                continue
            if not isinstance(obj, h5py.Dataset) or obj.is_virtual or obj.external:
                ep.dropped[key] = f"a {type(obj).__name__}, not a plain dataset"
                continue
            why = info_array(obj.shape, obj.dtype, rows)
            if why is None:
                ep.infos[key] = obj[()]
            else:
                ep.dropped[key] = why

    # ------------------------------------------------------------------ episodes
    def read(self, index: int) -> RawEpisode:
        """Episode ``index``, checked.

        Raises:
            FormatError: naming the file and the episode.
        """
        where = f"{self.path} episode_{index}"
        try:
            return self._read(index, where)
        except FormatError:
            raise
        except _READ_ERRORS as err:
            raise FormatError(f"{where}: cannot be read ({type(err).__name__}: {err}); the file is damaged"
                              ) from None

    def _read(self, index: int, where: str) -> RawEpisode:
        group = self._member(self._file, f"episode_{index}", str(self.path))
        if not isinstance(group, self.h5py.Group):
            raise FormatError(f"{where}: is a dataset, expected a group")
        rewards_ds = self._dataset(group, "rewards", where)
        steps = int(rewards_ds.shape[0]) if len(rewards_ds.shape) else -1
        rewards_ds = self._small(group, "rewards", steps, where)
        total = group.attrs.get("total_steps")
        if total is not None and (np.ndim(total) != 0 or int(total) != steps):
            raise FormatError(f"{where}: total_steps is {total!r}, its rewards hold {steps} steps; the file is "
                              "damaged")
        if steps == 0:
            raise FormatError(f"{where}: has 0 steps; expected at least 1")
        rewards = step_rewards(rewards_ds[()], steps, f"{where}/rewards")
        flags = {n: step_flags(self._small(group, n, steps, where)[()], steps, f"{where}/{n}", n)
                 for n in ("terminations", "truncations")}
        jpeg = set(self.source.jpeg_keys())
        obs: dict[Key, np.ndarray] = {}
        self._space(group, "observations", self.source.observation, steps + 1, where, ("observation",), jpeg, obs)
        actions: dict[Key, np.ndarray] = {}
        self._space(group, "actions", self.source.action, steps, where, ("action",), jpeg, actions)
        seed = group.attrs.get("seed")
        ep = RawEpisode(index, obs, actions, rewards, flags["terminations"], flags["truncations"],
                        seed=int(seed) if seed is not None and np.ndim(seed) == 0 and np.asarray(seed).dtype.kind
                        in "iu" else None)
        if "infos" in group:
            infos = self._member(group, "infos", where)
            if isinstance(infos, self.h5py.Group):
                self._infos(infos, steps + 1, f"{where}/infos", ("info",), ep)
        return ep
