"""Episodes held back until the zstd dictionaries of their columns are trained.

A zstd column created with ``dictionary=True`` gets a dictionary trained on the
dataset's first :data:`DICT_SAMPLE_ROWS` rows, or on the sample rows given to
``ShardWriter.create(dictionary_rows=...)`` (rows picked across a whole run
describe it better than its first episode). Until then the writer hands each
episode's rows to :class:`DictionaryTraining` instead of a shard; once enough
rows are held (or the writer flushes), :meth:`DictionaryTraining.train` trains
the dictionaries, writes their files (:func:`~torchrl_ext.format.write_dictionary`),
names them in the columns' options and gives the held episodes back, in order,
to be written with them. With fewer than 8 rows in the whole dataset there is
nothing to train on: the column is written without a dictionary
(``dictionary: false`` in its options).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..format import Column, Key, Manifest, write_dictionary

__all__ = ["DICT_SAMPLE_ROWS", "DictionaryTraining", "untrained_columns"]

logger = logging.getLogger(__name__)

DICT_SAMPLE_ROWS = 1024  # rows a compression dictionary is trained on (held back until then)
MIN_TRAIN_ROWS = 8  # fewer rows: no dictionary
MAX_SAMPLES = 4096  # rows picked evenly from those held

HeldEpisode = tuple[dict[Key, Any], "dict[Key, np.ndarray] | None"]  # (rows, final values)


def untrained_columns(schema: list[Column]) -> set[Key]:
    """Keys of the zstd columns of ``schema`` that want a dictionary and have none yet.

    Example:
        >>> from torchrl_ext.format import Column
        >>> col = Column(("obs",), np.dtype("uint8"), (4,), "zstd", (("dictionary", True),))
        >>> untrained_columns([col]), untrained_columns([col.with_encoding("zstd", {"dictionary": False})])
        ({('obs',)}, set())
    """
    return {c.key for c in schema if c.encoding == "zstd" and c.options_dict.get("dictionary")
            and "dictionary_file" not in c.options_dict}


class DictionaryTraining:
    """The episodes held while ``columns`` wait for their dictionaries.

    Args:
        columns: keys of the columns to train a dictionary for (see
            :func:`untrained_columns`); none means nothing is held.
    """

    def __init__(self, columns: set[Key], samples: dict[Key, np.ndarray] | None = None) -> None:
        self.columns = set(columns)
        self.samples = {k: v for k, v in (samples or {}).items() if k in self.columns}
        self._held: list[HeldEpisode] = []
        self._held_rows = 0

    @property
    def waiting(self) -> bool:
        """True while some column waits for its dictionary (episodes are then held)."""
        return bool(self.columns)

    def hold(self, rows: dict[Key, Any], final: dict[Key, np.ndarray] | None, length: int) -> bool:
        """Keeps one episode of ``length`` rows; True once enough rows are held to train on."""
        self._held.append((rows, final))
        self._held_rows += length
        return self._held_rows >= DICT_SAMPLE_ROWS or set(self.samples) == self.columns

    def train(self, root: Path, manifest: Manifest, dictionaries: dict[Key, bytes]) -> list[HeldEpisode]:
        """Trains, stores and records the dictionaries; returns the held episodes, in order.

        ``manifest.schema`` gets each column's new options and ``dictionaries``
        the trained bytes; afterwards nothing waits and nothing is held.
        """
        from ..encodings import train_dictionary

        for key in sorted(self.columns):
            col = manifest.column(key)
            if key in self.samples:
                rows = sample_rows(self.samples[key], col)
            else:
                rows = np.concatenate([r[key] for r, _ in self._held]) if self._held else np.zeros(0)
            options = col.options_dict
            if len(rows) >= MIN_TRAIN_ROWS:
                sample = rows[np.linspace(0, len(rows) - 1, min(len(rows), MAX_SAMPLES)).astype(np.int64)]
                dictionaries[key] = data = train_dictionary(sample)
                options.update(write_dictionary(root, key, data))
            else:
                logger.warning("%s: %d rows of %r are too few to train a dictionary; writing without one",
                               root, len(rows), key)
                options["dictionary"] = False
            manifest.schema = [col.with_encoding(col.encoding, options) if c.key == key else c
                               for c in manifest.schema]
        held, self._held, self._held_rows = self._held, [], 0
        self.columns, self.samples = set(), {}
        return held


def sample_rows(rows: Any, col: Column) -> np.ndarray:
    """``rows`` given to train ``col``'s dictionary on, checked against the column's row shape and dtype."""
    arr = np.asarray(rows)
    if arr.dtype != col.dtype or arr.shape[1:] != tuple(col.shape) or len(arr) < MIN_TRAIN_ROWS:
        raise ValueError(
            f"`dictionary_rows` for {'/'.join(col.key)}: expected at least {MIN_TRAIN_ROWS} rows of shape "
            f"{tuple(col.shape)} and dtype {col.dtype}, got an array of shape {arr.shape} and dtype {arr.dtype}; "
            "pass rows of the column as the episodes give them")
    return arr
