"""The rows a query reads: an episode filter and event windows resolved to global rows and shards.

``where`` is SQL over the episode table (as :class:`~torchrl_ext.storages.EpisodeView`
and ``select_episodes`` take it); ``event_regex``, ``win_len`` and ``bias``
select windows around events with the rule
:class:`~torchrl_ext.events.EventWindowDataset` uses
(:func:`~torchrl_ext.events.select_windows`, :mod:`torchrl_ext.events.windows`).
Without ``event_regex`` the selected episodes are read whole. A read of a
row also reads the next row of its episode when the dataset rebuilds
``("next", K)`` from it, so those rows count among the shards a query touches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..events import EventIndex, WindowQuery, select_windows
from ..events.windows import unmatched_message
from ..format import Manifest
from ..storages import EpisodeView, ShardedStorage

__all__ = ["RowSelection", "needed_bytes", "select_rows", "window_query"]


@dataclass(frozen=True)
class RowSelection:
    """What a query selects in one dataset.

    Attributes:
        episodes: dataset episode ids holding a selected row (sorted int64).
        rows: the selected global rows (sorted, unique int64).
        reads: the rows a read of ``rows`` touches: ``rows`` plus, when the
            dataset rebuilds ``("next", K)``, each row's successor inside its episode.
        shards: the shards holding ``reads`` (sorted int64).
    """

    episodes: np.ndarray
    rows: np.ndarray
    reads: np.ndarray
    shards: np.ndarray


def window_query(event_regex: str | None, win_len: int | None, bias: int = 0) -> WindowQuery | None:
    """The validated window rules of a query, or None for whole episodes (no ``event_regex``).

    Raises:
        ValueError, TypeError: ``win_len`` or ``bias`` without ``event_regex``, ``event_regex``
            without ``win_len``, or a value :class:`~torchrl_ext.events.WindowQuery` refuses.

    Example:
        >>> window_query("kill:.*", 8).win_len, window_query(None, None)
        (8, None)
    """
    if event_regex is None:
        if win_len is not None or bias != 0:
            raise ValueError(f"`win_len` ({win_len!r}) and `bias` ({bias!r}) shape windows around events; pass "
                             "`event_regex` too, or leave them out to select whole episodes")
        return None
    if win_len is None:
        raise ValueError(f"`win_len` is required with `event_regex` {event_regex!r}, got None; pass the window "
                         "length in steps, e.g. win_len=64")
    return WindowQuery(event_regex=event_regex, win_len=win_len, bias=bias)


def select_rows(storage: ShardedStorage | EpisodeView, where: str | None = None, event_regex: str | None = None,
                win_len: int | None = None, bias: int = 0, *, build_missing: str = "memory") -> RowSelection:
    """The rows, episodes and shards a query selects in ``storage`` (a view: among its episodes only).

    Args:
        storage: a :class:`~torchrl_ext.ShardedStorage` or an :class:`~torchrl_ext.storages.EpisodeView`.
        where: SQL ``WHERE`` over the episode table (None: every episode).
        event_regex: keep only windows around events whose name matches (``re.match``);
            None selects the filtered episodes whole.
        win_len, bias: the windows' length and offset (see :mod:`torchrl_ext.events.windows`).
        build_missing: what :meth:`~torchrl_ext.events.EventIndex.open` does without a saved index.

    Raises:
        TypeError: ``storage`` is neither a storage nor a view.
        ValueError: ``where`` is not valid SQL over the table's columns, ``event_regex`` matches
            no event name, or a window rule is out of range.

    Example:
        >>> import tempfile
        >>> from torchrl_ext.synthetic import write_synthetic
        >>> root = write_synthetic(tempfile.mkdtemp() + "/ds", episodes=4, length=10, obs_shape=(1,),
        ...                        shard_rows=10, events_every=4)
        >>> _ = EventIndex.build(root)
        >>> storage = ShardedStorage(root)
        >>> sel = select_rows(storage, "score >= 2", "tick:2", win_len=2)
        >>> sel.episodes.tolist(), sel.rows.tolist(), sel.shards.tolist()
        ([2, 3], [26, 27, 36, 37], [2, 3])
    """
    query = window_query(event_regex, win_len, bias)
    base = storage.base if isinstance(storage, EpisodeView) else storage
    if not isinstance(base, ShardedStorage):
        raise TypeError(f"`storage` must be a ShardedStorage or an EpisodeView, got {type(storage).__name__}; "
                        "open a dataset with ShardedStorage(root_or_url)")
    first, length = base.episode_bounds
    episodes = storage.select_episodes(where)
    if episodes is None:
        episodes = np.arange(base.num_episodes, dtype=np.int64)
    if query is None:
        episodes = episodes[length[episodes] > 0]
        rows = _ranges(first[episodes], length[episodes])
    else:
        index = EventIndex.open(base.root, build_missing=build_missing)
        if index.match(query.event_regex).size == 0:
            raise ValueError(unmatched_message(index, query.event_regex) + "; pick one of these names")
        windows = select_windows(index, first, length, query, episodes=episodes, split=False)
        rows = np.unique(windows.rows_and_mask()[0])
        episodes = np.unique(windows.episode).astype(np.int64)
    reads = _with_next_rows(base, rows)
    shards = np.unique(np.searchsorted(base.offsets, reads, side="right") - 1).astype(np.int64)
    return RowSelection(episodes=episodes, rows=rows, reads=reads, shards=shards)


def needed_bytes(manifest: Manifest, offsets: np.ndarray, rows: np.ndarray) -> int:
    """The bytes ``rows`` occupy: each raw column's row bytes, and the rest of each shard (encoded
    columns, stored final values) in proportion to the shard's rows selected.

    Example:
        >>> import tempfile
        >>> from torchrl_ext.synthetic import write_synthetic
        >>> storage = ShardedStorage(write_synthetic(tempfile.mkdtemp() + "/ds", episodes=2, length=4,
        ...                                          obs_shape=(8,), shard_rows=4))
        >>> whole = sum(s.bytes for s in storage.manifest.shards)
        >>> needed_bytes(storage.manifest, storage.offsets, np.arange(8)) == whole
        True
    """
    if rows.size == 0 or not manifest.shards:
        return 0
    shard_rows = np.array([s.rows for s in manifest.shards], np.int64)
    shard_bytes = np.array([s.bytes for s in manifest.shards], np.int64)
    raw = sum(c.row_bytes for c in manifest.schema if c.encoding == "raw")
    counts = np.bincount(np.searchsorted(offsets, rows, side="right") - 1, minlength=len(shard_rows))
    rest = np.maximum(shard_bytes - shard_rows * raw, 0)
    share = np.divide(counts, shard_rows, out=np.zeros(len(shard_rows)), where=shard_rows > 0)
    return round(float((counts * raw).sum() + (share * rest).sum()))


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(a, a + n) for a, n in zip(starts, lengths)])`` without a Python loop."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    begin = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    return np.repeat(starts - begin, lengths) + np.arange(total, dtype=np.int64)


def _with_next_rows(base: Any, rows: np.ndarray) -> np.ndarray:
    """``rows`` plus each one's next row inside its episode, when a read rebuilds ``("next", K)`` from it."""
    if not base.manifest.next_from_row or rows.size == 0:
        return rows
    first, length = base.episode_bounds
    e = np.searchsorted(first, rows, side="right") - 1
    inside = rows < first[e] + length[e] - 1
    return np.union1d(rows, rows[inside] + 1)
