"""Minari's serialized gymnasium spaces, checked, as a tree of columns.

Minari 0.5 writes ``observation_space`` and ``action_space`` into
``metadata.json`` as JSON strings (``minari.serialization.serialize_space``)::

    {"type": "Box", "dtype": "float32", "shape": [3], "low": [...], "high": [...]}
    {"type": "Discrete", "dtype": "int64", "start": 0, "n": 4}
    {"type": "MultiDiscrete", "dtype": "int64", "nvec": [...], "start": [...]}
    {"type": "MultiBinary", "n": 4}          (n: an int or a list of ints)
    {"type": "Dict", "subspaces": {"name": {...}, ...}}
    {"type": "Tuple", "subspaces": [{...}, ...]}
    {"type": "Text", "max_length": 16, "min_length": 1, "charset": "..."}

Each leaf becomes one column: a ``Dict`` entry is a nested key named like the
entry, a ``Tuple`` item a nested key ``"0"``, ``"1"``, ... (as ``generate``
names them); ``Box``/``MultiDiscrete``/``MultiBinary`` an array column of the
space's dtype and shape; ``Discrete`` an int64 scalar column. ``Text`` has no
numeric column: a dataset holding one is refused, naming the key.

:func:`compact` is the JSON kept in the manifest (``low``/``high`` as one
number when every element is equal), :func:`to_gymnasium` builds the space
again from it for export.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...format import DTYPES, FormatError, Key
from ...format.files import loads_json

__all__ = ["LEAF_KINDS", "Space", "compact", "key_name", "leaves", "parse_space", "to_gymnasium"]

LEAF_KINDS = ("Box", "Discrete", "MultiDiscrete", "MultiBinary")
MAX_DEPTH = 16
MAX_LEAVES = 1000
MAX_DIMS = 8
MAX_ELEMENTS = 1 << 31  # per row of one leaf
MAX_NAME_CHARS = 128


@dataclass(frozen=True)
class Space:
    """One node of a space: a leaf (``kind`` in :data:`LEAF_KINDS`), ``Text``, or ``Dict``/``Tuple`` with ``children``.

    Attributes:
        kind: the gymnasium space's type name.
        dtype: the leaf's numpy dtype name ("" for containers and Text).
        shape: the leaf's per-step shape.
        children: ``(name, space)`` pairs of a Dict (its names) or Tuple (``"0"``, ``"1"``...).
        spec: the leaf's description (:func:`compact`).
    """

    kind: str
    dtype: str = ""
    shape: tuple[int, ...] = ()
    children: tuple[tuple[str, Space], ...] = ()
    spec: Any = None

    @property
    def image(self) -> bool:
        """Minari's ``is_image_space``: a uint8 Box ``[H, W]`` or ``[H, W, C]``, H and W >= 32, bounds 0 and 255.

        Minari stores such leaves as JPEG bytes when the dataset's ``jpeg_encoding`` is on.
        """
        s = self.spec or {}
        return (self.kind == "Box" and self.dtype == "uint8" and len(self.shape) in (2, 3)
                and self.shape[0] >= 32 and self.shape[1] >= 32 and s.get("low") == 0 and s.get("high") == 255)


def key_name(key: Key) -> str:
    """``("observation", "pos")`` -> ``"observation/pos"`` (how errors name a leaf)."""
    return "/".join(key)


def _fail(where: str, name: str, problem: str) -> FormatError:
    return FormatError(f"{where}: {name} {problem}; the file was not written by Minari 0.5, or is damaged")


def _shape(value: Any, where: str, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) > MAX_DIMS or not all(
            type(d) is int and 0 <= d < MAX_ELEMENTS for d in value):
        raise _fail(where, name, f"has shape {value!r:.80}, expected a list of at most {MAX_DIMS} ints >= 0")
    if math.prod(value) > MAX_ELEMENTS:
        raise _fail(where, name, f"has shape {value}, more than {MAX_ELEMENTS} elements per step")
    return tuple(value)


def _dtype(value: Any, where: str, name: str) -> str:
    if not isinstance(value, str) or value not in DTYPES:
        raise _fail(where, name, f"has dtype {value!r:.40}, expected one of {sorted(DTYPES)}")
    return value


def _plain(x: Any) -> Any:
    """A bound element as JSON: non-finite floats as the strings ``"inf"``, ``"-inf"``, ``"nan"``."""
    return str(x) if isinstance(x, float) and not math.isfinite(x) else x


def _bound(value: Any, shape: tuple[int, ...], where: str, name: str) -> Any:
    """A Box bound as one value when it is uniform, else the nested list (shape checked)."""
    try:
        arr = np.asarray(value)
        if arr.dtype.kind == "U":  # compact JSON's "inf", "-inf", "nan"
            arr = arr.astype(np.float64)
    except (TypeError, ValueError, OverflowError):
        arr = np.asarray(None)
    if arr.dtype.kind not in "biuf" or arr.shape not in (shape, ()):
        raise _fail(where, name, f"has a bound {value!r:.40} that is not a number or a list of numbers of "
                                 f"shape {shape}")
    flat = arr.reshape(-1)
    same = flat == flat[:1]
    if flat.dtype.kind == "f":
        same |= np.isnan(flat) & np.isnan(flat[:1])
    if flat.size and bool(same.all()):
        return _plain(flat[0].item())
    return [_plain(x) for x in flat.tolist()]  # flat, row-major


def _node(obj: Any, where: str, name: str, depth: int, count: list[int]) -> Space:
    if depth > MAX_DEPTH:
        raise _fail(where, name, f"nests deeper than {MAX_DEPTH} levels")
    if not isinstance(obj, Mapping) or not isinstance(obj.get("type"), str):
        raise _fail(where, name, f"is {obj!r:.60}, expected a serialized space (a JSON object with a 'type')")
    kind = obj["type"]
    if kind in ("Dict", "Tuple"):
        subs = obj.get("subspaces")
        if kind == "Dict" and isinstance(subs, Mapping):
            items = list(subs.items())
        elif kind == "Tuple" and isinstance(subs, list):
            items = [(str(i), s) for i, s in enumerate(subs)]
        else:
            raise _fail(where, name, f"is a {kind} without its subspaces")
        if not items:
            raise _fail(where, name, f"is an empty {kind}; nothing to store")
        children = []
        for child, sub in items:
            if not isinstance(child, str) or not 0 < len(child) <= MAX_NAME_CHARS or "/" in child \
                    or child in (".", "..") or not child.isprintable():
                raise _fail(where, name, f"has an entry named {child!r:.40}, expected 1 to {MAX_NAME_CHARS} "
                                         "printable characters without '/'")
            children.append((child, _node(sub, where, f"{name}/{child}", depth + 1, count)))
        return Space(kind, children=tuple(children))
    count[0] += 1
    if count[0] > MAX_LEAVES:
        raise _fail(where, name, f"has more than {MAX_LEAVES} leaf spaces")
    if kind == "Text":
        return Space("Text", spec={"type": "Text"})
    if kind == "Box":
        dtype = _dtype(obj.get("dtype"), where, name)
        shape = _shape(obj.get("shape"), where, name)
        spec = {"type": "Box", "dtype": dtype, "shape": list(shape),
                "low": _bound(obj.get("low"), shape, where, name),
                "high": _bound(obj.get("high"), shape, where, name)}
        return Space("Box", dtype, shape, spec=spec)
    if kind == "Discrete":
        n, start = obj.get("n"), obj.get("start", 0)
        if type(n) is not int or type(start) is not int or n < 1:
            raise _fail(where, name, f"is a Discrete with n={n!r:.20}, start={start!r:.20}; expected ints, n >= 1")
        return Space("Discrete", "int64", (), spec={"type": "Discrete", "n": n, "start": start})
    if kind == "MultiDiscrete":
        dtype = _dtype(obj.get("dtype", "int64"), where, name)
        try:
            nvec = np.asarray(obj.get("nvec"))
        except (TypeError, ValueError, OverflowError):
            nvec = np.asarray(None)
        if nvec.dtype.kind not in "iu" or nvec.ndim == 0:
            raise _fail(where, name, f"is a MultiDiscrete with nvec {obj.get('nvec')!r:.40}; expected a list of ints")
        shape = _shape(list(nvec.shape), where, name)
        spec = {"type": "MultiDiscrete", "dtype": dtype, "nvec": obj.get("nvec"), "start": obj.get("start")}
        return Space("MultiDiscrete", dtype, shape, spec=spec)
    if kind == "MultiBinary":
        n = obj.get("n")
        shape = _shape([n] if type(n) is int else n, where, name)
        return Space("MultiBinary", "int8", shape, spec={"type": "MultiBinary", "n": n})
    raise _fail(where, name, f"is a {kind!r:.40} space; Minari 0.5 writes Box, Discrete, MultiDiscrete, "
                             "MultiBinary, Dict, Tuple and Text")


def parse_space(serialized: Any, where: str, name: str) -> Space:
    """The checked tree of a space as ``metadata.json`` holds it (a JSON string, or already a dict).

    Args:
        serialized: the ``observation_space`` / ``action_space`` value.
        where: the file, for errors.
        name: ``"observation"`` or ``"action"``, for errors.

    Raises:
        FormatError: not a space Minari 0.5 writes, or beyond the limits (depth, leaves, elements).

    Example:
        >>> s = parse_space('{"type": "Dict", "subspaces": {"pos": {"type": "Box", "dtype": "float32", '
        ...                 '"shape": [2], "low": [-1, -1], "high": [1, 1]}, "t": {"type": "Tuple", '
        ...                 '"subspaces": [{"type": "Discrete", "n": 3, "start": 0}]}}}', "metadata.json", "observation")
        >>> [(key_name(k), leaf.dtype, leaf.shape) for k, leaf in leaves(s, ("observation",))]
        [('observation/pos', 'float32', (2,)), ('observation/t/0', 'int64', ())]
    """
    if isinstance(serialized, str):
        try:
            serialized = loads_json(serialized)  # counted first: never parsed to the recursion limit
        except ValueError as err:
            raise _fail(where, f"`{name}_space`", f"is not JSON ({err})") from None
    return _node(serialized, where, f"`{name}_space`", 0, [0])


def leaves(space: Space, prefix: Key) -> list[tuple[Key, Space]]:
    """``(key, leaf)`` of every leaf (``Text`` included), depth first in the space's order."""
    if space.kind in ("Dict", "Tuple"):
        return [pair for name, child in space.children for pair in leaves(child, (*prefix, name))]
    return [(prefix, space)]


def compact(space: Space) -> dict[str, Any]:
    """The space as small JSON for the manifest (uniform bounds as one number); :func:`to_gymnasium` reads it."""
    if space.kind == "Dict":
        return {"type": "Dict", "subspaces": {name: compact(child) for name, child in space.children}}
    if space.kind == "Tuple":
        return {"type": "Tuple", "subspaces": [compact(child) for _, child in space.children]}
    return dict(space.spec)


def to_gymnasium(spec: Mapping[str, Any]) -> Any:
    """A gymnasium space from :func:`compact`'s JSON (export back to Minari)."""
    from gymnasium import spaces

    kind = spec["type"]
    if kind == "Dict":
        return spaces.Dict({name: to_gymnasium(sub) for name, sub in spec["subspaces"].items()})
    if kind == "Tuple":
        return spaces.Tuple(tuple(to_gymnasium(sub) for sub in spec["subspaces"]))
    if kind == "Discrete":
        return spaces.Discrete(int(spec["n"]), start=int(spec.get("start", 0)))
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(np.asarray(spec["nvec"]), dtype=spec["dtype"],
                                    start=None if spec.get("start") is None else np.asarray(spec["start"]))
    if kind == "MultiBinary":
        return spaces.MultiBinary(spec["n"])
    if kind == "Box":
        dtype = np.dtype(spec["dtype"])
        shape = tuple(spec["shape"])
        low, high = (np.asarray(spec[b], dtype=np.float64 if dtype.kind == "f" else dtype).astype(dtype)
                     for b in ("low", "high"))
        low, high = (np.full(shape, b, dtype) if b.ndim == 0 else b.reshape(shape) for b in (low, high))
        return spaces.Box(low=low, high=high, shape=shape, dtype=dtype)
    raise ValueError(f"`spec` has type {kind!r}; expected Box, Discrete, MultiDiscrete, MultiBinary, Dict or Tuple")
