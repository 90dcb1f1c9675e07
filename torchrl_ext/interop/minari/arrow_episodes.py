"""Episodes of Minari's Arrow and Parquet backends (``data/<i>/part-<k>.arrow``), read one at a time, defensively.

Each episode is a directory named by its index, written by ``pyarrow.dataset``
(``minari/dataset/_storages/arrow_storage.py``): ``metadata.json``
(``{"id", "total_steps", "seed"?, "options"?}``) and ``part-<k>.arrow`` (an
Arrow IPC file) or ``part-<k>.parquet``, whose ``T + 1`` rows hold::

    observations    a Box/MultiDiscrete/MultiBinary leaf: fixed_size_list<dtype>[prod(shape)];
                    a Discrete leaf: an integer; a Dict: a struct of its entries; a Tuple: a struct with
                    fields "0", "1", ...; an image leaf under jpeg_encoding: binary (JPEG bytes)
    actions         the same for the action space, padded by one zero row
    rewards, terminations, truncations   numbers and bools, padded by one zero row
    infos           optional struct: fixed_size_list fields with a "shape" field metadata, numbers, structs

Defences: every file is opened through :func:`~torchrl_ext.format.open_regular`
without following a symlink, an episode directory must be a directory (not a
link), files other than ``metadata.json``, ``part-<k>.<ext>`` and the names
pyarrow skips (``_*``, ``.*``) are refused, each table is validated in full
(offsets and lengths) before a value is used, and every column's type, null
count and row count is checked against the space before it is converted.
"""

from __future__ import annotations

import math
import os
import re
import stat
from pathlib import Path
from typing import Any, Self

import numpy as np

from ...format import FormatError, Key, open_regular
from .layout import METADATA_NAME, MinariSource, read_json
from .spaces import Space
from .values import (
    RawEpisode,
    decode_jpeg,
    info_array,
    leaf_array,
    step_flags,
    step_rewards,
)

__all__ = ["ArrowEpisodes", "load_pyarrow"]

_COLUMNS = ("observations", "actions", "rewards", "terminations", "truncations")


def load_pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.ipc
        import pyarrow.parquet
    except ImportError as err:
        raise ImportError(f"reading Minari's Arrow datasets needs pyarrow ({err}); pip install torchrl-ext[minari]"
                          ) from err
    return pyarrow


def _whole(column: Any) -> Any:
    """A table column (chunked) as one array."""
    return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)


class ArrowEpisodes:
    """Reads episode ``i`` of a Minari Arrow (or Parquet) dataset on demand."""

    def __init__(self, source: MinariSource) -> None:
        self.pa = load_pyarrow()
        self.source = source
        self.ext = source.data_format  # "arrow" or "parquet"
        self._part = re.compile(rf"part-(0|[1-9][0-9]{{0,8}})\.{self.ext}")

    def close(self) -> None:
        """Nothing stays open between episodes."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ files
    def _parts(self, directory: Path) -> list[Path]:
        try:
            mode = os.lstat(directory).st_mode
        except FileNotFoundError:
            raise FormatError(f"{directory}: missing; metadata.json says the dataset has "
                              f"{self.source.total_episodes} episodes; the dataset is incomplete") from None
        if not stat.S_ISDIR(mode):
            raise FormatError(f"{directory}: expected an episode directory, found "
                              f"{'a symbolic link' if stat.S_ISLNK(mode) else 'a file'}; replace it with the "
                              "directory itself")
        parts = []
        for name in sorted(os.listdir(directory)):
            m = self._part.fullmatch(name)
            if m:
                parts.append((int(m.group(1)), directory / name))
            elif name != METADATA_NAME and not name.startswith(("_", ".")):
                raise FormatError(f"{directory / name}: unexpected in a Minari {self.ext} episode directory "
                                  f"(expected {METADATA_NAME} and part-<k>.{self.ext}); remove it")
        if not parts:
            raise FormatError(f"{directory}: holds no part-<k>.{self.ext} file; the dataset is incomplete")
        return [p for _, p in sorted(parts)]

    def _table(self, path: Path) -> Any:
        pa = self.pa
        try:
            with open_regular(path, follow=False) as f:
                if self.ext == "arrow":
                    table = pa.ipc.open_file(f).read_all()
                else:
                    table = pa.parquet.read_table(f)
            table.validate(full=True)
        except FormatError:
            raise
        except (pa.ArrowException, OSError, ValueError, TypeError) as err:
            raise FormatError(f"{path}: not a readable {self.ext} file ({type(err).__name__}: {err}); the file "
                              "is truncated or damaged") from None
        return table

    # ------------------------------------------------------------------ columns
    def _leaf(self, arr: Any, leaf: Space, rows: int, where: str, key: Key, jpeg: bool) -> np.ndarray:
        types = self.pa.types
        t = arr.type
        if arr.null_count:
            raise FormatError(f"{where}: {'/'.join(key)} has {arr.null_count} missing values; the file is damaged")
        if jpeg:
            if not (types.is_binary(t) or types.is_large_binary(t)):
                raise FormatError(f"{where}: {'/'.join(key)} is {t}, expected JPEG bytes (jpeg_encoding is on)")
            return decode_jpeg(arr.to_pylist()[:rows], leaf, rows, where, key)
        if leaf.kind == "Discrete":
            if not types.is_integer(t):
                raise FormatError(f"{where}: {'/'.join(key)} is {t}, expected integers for its Discrete space")
            return leaf_array(arr.to_numpy()[:rows], leaf, rows, where, key)
        size = math.prod(leaf.shape)
        if not types.is_fixed_size_list(t) or t.list_size != max(size, 1) or not (
                types.is_integer(t.value_type) or types.is_floating(t.value_type) or types.is_boolean(t.value_type)):
            raise FormatError(f"{where}: {'/'.join(key)} is {t}, expected fixed_size_list<{leaf.dtype}>[{size}] for "
                              f"its {leaf.kind} space of shape {leaf.shape}; the file does not match its metadata.json")
        values = arr.flatten()
        if values.null_count:
            raise FormatError(f"{where}: {'/'.join(key)} has missing values; the file is damaged")
        flat = values.to_numpy(zero_copy_only=False)
        return leaf_array(flat.reshape(len(arr), *leaf.shape)[:rows], leaf, rows, where, key)

    def _space(self, arr: Any, space: Space, rows: int, where: str, key: Key, jpeg: set[Key],
               out: dict[Key, np.ndarray]) -> None:
        if space.kind not in ("Dict", "Tuple"):
            out[key] = self._leaf(arr, space, rows, where, key, key in jpeg)
            return
        names = [c for c, _ in space.children]
        t = arr.type
        if not self.pa.types.is_struct(t) or sorted(t.field(i).name for i in range(t.num_fields)) != sorted(names):
            raise FormatError(f"{where}: {'/'.join(key)} is {t!s:.120}, expected a struct of {names[:8]} for its "
                              f"{space.kind} space; the file does not match its metadata.json")
        if arr.null_count:
            raise FormatError(f"{where}: {'/'.join(key)} has missing values; the file is damaged")
        for name, child in space.children:
            self._space(arr.field(name), child, rows, where, (*key, name), jpeg, out)

    def _infos(self, arr: Any, rows: int, prefix: Key, ep: RawEpisode) -> None:
        types = self.pa.types
        t = arr.type
        for i in range(t.num_fields):
            f = t.field(i)
            key, child = (*prefix, f.name), arr.field(i)
            if not 0 < len(f.name) <= 128 or "/" in f.name or not f.name.isprintable() or f.name in (".", ".."):
                ep.dropped[key] = "a name that is not 1 to 128 printable characters without '/'"
            elif child.null_count:
                ep.dropped[key] = "missing values"
            elif types.is_struct(f.type):
                self._infos(child, rows, key, ep)
            elif types.is_fixed_size_list(f.type) and (types.is_integer(f.type.value_type) or types.is_floating(
                    f.type.value_type) or types.is_boolean(f.type.value_type)):
                shape = (f.metadata or {}).get(b"shape", b"")
                try:
                    dims = tuple(int(d) for d in shape.split(b",") if d)
                except ValueError:
                    dims = (-1,)
                if math.prod(dims) != f.type.list_size or any(d < 0 for d in dims):
                    ep.dropped[key] = f"a shape {shape!r:.40} that does not match its {f.type.list_size} values"
                    continue
                values = child.flatten()
                why = "missing values" if values.null_count else info_array(
                    (len(child), *dims), np.dtype(f.type.value_type.to_pandas_dtype()), rows)
                if why is None:
                    ep.infos[key] = values.to_numpy(zero_copy_only=False).reshape(len(child), *dims)
                else:
                    ep.dropped[key] = why
            elif types.is_integer(f.type) or types.is_floating(f.type) or types.is_boolean(f.type):
                why = info_array((len(child),), np.dtype(f.type.to_pandas_dtype()), rows)
                if why is None:
                    ep.infos[key] = child.to_numpy(zero_copy_only=False)
                else:
                    ep.dropped[key] = why
            else:
                ep.dropped[key] = f"type {f.type!s:.60}, not numbers"

    # ------------------------------------------------------------------ episodes
    def read(self, index: int) -> RawEpisode:
        """Episode ``index``, checked.

        Raises:
            FormatError: naming the file and the episode.
        """
        directory = self.source.data_dir / str(index)
        parts = self._parts(directory)
        meta_path = directory / METADATA_NAME
        meta = read_json(meta_path)
        steps = meta.get("total_steps") if isinstance(meta, dict) else None
        if type(steps) is not int or steps < 1:
            raise FormatError(f"{meta_path}: total_steps is {steps!r:.40}, expected an int >= 1")
        tables = [self._table(p) for p in parts]
        where = str(parts[0]) if len(parts) == 1 else f"{directory} (part files)"
        try:
            table = tables[0] if len(tables) == 1 else self.pa.concat_tables(tables)
        except (self.pa.ArrowException, ValueError) as err:
            raise FormatError(f"{where}: part files of different columns ({err}); the dataset is damaged") from None
        missing = [c for c in _COLUMNS if c not in table.column_names]
        if missing:
            raise FormatError(f"{where}: has no column(s) {missing}; a Minari episode holds {list(_COLUMNS)}")
        if table.num_rows != steps + 1:
            raise FormatError(f"{where}: holds {table.num_rows} rows, expected {steps + 1} (total_steps {steps} in "
                              f"{meta_path}, plus the last observation); the dataset is damaged")
        cols = {c: _whole(table.column(c)) for c in table.column_names}
        for name in ("rewards", "terminations", "truncations"):
            if cols[name].null_count:
                raise FormatError(f"{where}: {name} has missing values; the file is damaged")
        rewards = step_rewards(cols["rewards"].to_numpy(zero_copy_only=False)[:steps], steps, f"{where} rewards")
        flags = {n: step_flags(cols[n].to_numpy(zero_copy_only=False)[:steps], steps, f"{where} {n}", n)
                 for n in ("terminations", "truncations")}
        jpeg = set(self.source.jpeg_keys())
        obs: dict[Key, np.ndarray] = {}
        self._space(cols["observations"], self.source.observation, steps + 1, where, ("observation",), jpeg, obs)
        actions: dict[Key, np.ndarray] = {}
        self._space(cols["actions"], self.source.action, steps, where, ("action",), jpeg, actions)
        seed = meta.get("seed")
        ep = RawEpisode(index, obs, actions, rewards, flags["terminations"], flags["truncations"],
                        seed=seed if type(seed) is int else None)
        if "infos" in cols and self.pa.types.is_struct(cols["infos"].type):
            self._infos(cols["infos"], steps + 1, ("info",), ep)
        return ep
