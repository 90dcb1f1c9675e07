"""Frames encoded where they are played: a worker hands over chunk bytes, the writer appends them.

``generate(..., encodings={"observation": "video"})`` gives every worker a
:class:`FrameEncoder` for the dataset's encoded columns. After an episode the
worker cuts each such column into chunks of the column's chunk size (the last
one shorter) and encodes them with the column's codec, so what crosses the
process boundary (a pipe, or Ray's object store) is the compressed bytes,
not the raw frames. ``("next", key)``, stored by the dataset as the next
row's value plus the episode's final one, shrinks to that final row.
:func:`unpack_episode` turns the result back into ``ShardWriter.add_episode``
arguments in the writing process.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["FrameEncoder", "EncodeError", "unpack_episode"]

Key = tuple[str, ...]


def _pop(data: dict, key: Key) -> Any:
    node = data
    for part in key[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return None
    return node.pop(key[-1], None) if isinstance(node, dict) else None


def _get(data: Mapping, key: Key) -> Any:
    node: Any = data
    for part in key:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _leaves(data: Mapping, prefix: Key = ()):
    for k, v in data.items():
        if isinstance(v, Mapping):
            yield from _leaves(v, (*prefix, k))
        else:
            yield (*prefix, k), v


def _set(data: dict, key: Key, value: Any) -> None:
    node = data
    for part in key[:-1]:
        node = node.setdefault(part, {})
    node[key[-1]] = value


class EncodeError(ValueError):
    """An episode's column cannot take its encoding (wrong dtype or shape): every episode would fail alike."""


class FrameEncoder:
    """Encodes an episode's columns into chunks (``EncodedChunks``) inside a worker.

    Pickles as its specs: each process builds its codecs on first use.

    Args:
        columns: ``{key: (encoding options, dictionary bytes or None)}``, as
            returned by ``ShardWriter.encoded_columns()``.
    """

    def __init__(self, columns: Mapping[Key, tuple[Any, bytes | None]]) -> None:
        from ..encodings import resolve_encoding

        self.columns = {tuple(k): (resolve_encoding(o), d) for k, (o, d) in columns.items()}
        self._codecs: dict[Key, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"columns": {k: (o.to_json(), d) for k, (o, d) in self.columns.items()}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["columns"])

    def __bool__(self) -> bool:
        return bool(self.columns)

    def _codec(self, key: Key, arr: np.ndarray) -> Any:
        codec = self._codecs.get(key)
        if codec is None:
            from ..encodings import check_column, load_codec

            options, dictionary = self.columns[key]
            try:
                check_column(options, arr.dtype, arr.shape[1:])
            except ValueError as err:
                raise EncodeError(f"`encodings` for {key!r}: {err}") from None
            codec = self._codecs[key] = load_codec(options, arr.dtype, arr.shape[1:], dictionary)
        return codec

    def __call__(self, result: dict[str, Any]) -> dict[str, Any]:
        """Replaces the encoded columns of ``result["data"]`` by ``result["encoded"]`` (in place)."""
        from ..encodings import EncodedChunks

        data = result["data"]
        encoded, finals = {}, []
        for key, (options, _) in self.columns.items():
            arr = _get(data, key)
            if not isinstance(arr, np.ndarray) or arr.ndim < 1 or not len(arr):
                continue
            codec = self._codec(key, arr)
            size = options.chunk_rows
            parts = [arr[i:i + size] for i in range(0, len(arr), size)]
            encoded[key] = EncodedChunks(tuple(codec.encode(p) for p in parts), tuple(len(p) for p in parts),
                                         arr.dtype, arr.shape[1:], options.codec_tag)
            _pop(data, key)
            nxt = _get(data, ("next", *key)) if key[0] != "next" else None
            if isinstance(nxt, np.ndarray) and len(nxt) == len(arr):
                _set(data, ("next", *key), np.ascontiguousarray(nxt[-1:]))
                finals.append(key)
        result["encoded"] = encoded
        result["final_only"] = finals
        return result


def unpack_episode(result: dict[str, Any]) -> tuple[dict, dict | None]:
    """``(td, encoded)`` for ``ShardWriter.add_episode`` from a worker's result (encoded or not)."""
    data = result["data"]
    encoded = result.get("encoded") or None
    finals = {("next", *k) for k in result.get("final_only", ())}
    length = next(len(v) for k, v in _leaves(data) if k not in finals)
    for key in result.get("final_only", ()):
        last = _get(data, ("next", *key))
        _set(data, ("next", *key), np.broadcast_to(last[0], (length, *last.shape[1:])))
    return data, encoded
