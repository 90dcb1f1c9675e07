"""A dataset's column encodings, from ``ShardWriter.create(encodings=...)`` to its schema.

The schema is only known once the first episode arrives, so until then the
manifest records the requested encodings in its ``encodings`` list, one
placeholder column each (dtype uint8, no row shape, the encoding's name and
options): :func:`encodings_to_manifest` writes them, :func:`encodings_from_manifest`
reads them back for ``ShardWriter.open``. The first episode's inferred schema
then takes them on (:func:`apply_encodings`, each checked against its
column's dtype and row shape) and the list is emptied.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..format import Column, Key

__all__ = ["resolve_column_encodings", "encodings_to_manifest", "encodings_from_manifest", "apply_encodings"]


def resolve_column_encodings(encodings: Mapping[Any, Any] | None) -> dict[Key, Any]:
    """``{key tuple: encoding options}`` from ``ShardWriter.create``'s ``encodings`` argument.

    Example:
        >>> resolve_column_encodings({"pixels": "zstd"})[("pixels",)].name
        'zstd'
    """
    if not encodings:
        return {}
    if not isinstance(encodings, Mapping):
        raise TypeError(f"`encodings` must be a mapping of key -> encoding, got {type(encodings).__name__}")
    from ..encodings import resolve_encoding

    out: dict[Key, Any] = {}
    for key, spec in encodings.items():
        k = (key,) if isinstance(key, str) else tuple(key)
        if not k or not all(isinstance(x, str) for x in k):
            raise TypeError(f"`encodings` keys must be str or tuples of str, got {key!r}")
        out[k] = resolve_encoding(spec)
    return out


def encodings_to_manifest(encodings: Mapping[Key, Any]) -> list[Column]:
    """The manifest's placeholder columns for resolved encodings (before the schema is known)."""
    return [Column(k, np.dtype(np.uint8), (), e.name,
                   tuple(sorted((n, v) for n, v in e.to_json().items() if n != "name")))
            for k, e in encodings.items()]


def encodings_from_manifest(columns: list[Column]) -> dict[Key, Any]:
    """The resolved encodings recorded by :func:`encodings_to_manifest`.

    Example:
        >>> from torchrl_ext.encodings import Zstd
        >>> cols = encodings_to_manifest({("pixels",): Zstd(level=5)})
        >>> encodings_from_manifest(cols)[("pixels",)] == Zstd(level=5)
        True
    """
    return resolve_column_encodings({c.key: {"name": c.encoding, **c.options_dict} for c in columns})


def apply_encodings(schema: list[Column], encodings: Mapping[Key, Any]) -> list[Column]:
    """``schema`` with each column named in ``encodings`` set to its encoding.

    Raises:
        ValueError: when ``encodings`` names a key the schema does not store, or
            an encoding cannot hold its column's dtype or row shape.
    """
    keys = {c.key for c in schema}
    unknown = sorted(k for k in encodings if k not in keys)
    if unknown:
        raise ValueError(
            f"`encodings` names {unknown}, which the episode does not store; stored keys are "
            f"{sorted(keys)}"
        )
    from ..encodings import check_column

    out = []
    for col in schema:
        enc = encodings.get(col.key)
        if enc is not None and enc.name != "raw":
            try:
                check_column(enc, col.dtype, col.shape)
            except ValueError as err:
                raise ValueError(f"`encodings` for {col.key!r}: {err}") from None
            col = col.with_encoding(enc.name, enc.to_json())
        out.append(col)
    return out
