"""Window selection around events: vectorised numpy, computed once per query.

Rules (MineStudio 1.1.6 ``minestudio/data/minecraft/dataset_event.py``,
``EventKernel.filter_out`` and ``EventDataset.__getitem__``, unless noted):

* ``event_regex``: ``re.match`` on the full name (anchored at the start only).
* ``min_step``: events at steps ``< min_step`` are dropped first (MineStudio
  hard-codes 128 as "dirty events"; the default here is 0).
* ``min_nearby``: per (episode, name), in step order, an event whose step
  satisfies ``step - last_kept_step <= min_nearby`` is dropped (MineStudio's
  ``<=``): with 20, steps 130, 140, 160 keep 130 and 160; 130, 150 keep 130.
* The window of an event at step ``i`` covers steps
  ``[i + bias - win_len * skip_frame, i + bias)``, one row every ``skip_frame``
  steps (``win_len`` rows). With ``bias=0`` the event's own step is *not*
  inside the window: the window ends just before it.
* ``edge="shift"`` (MineStudio): a window starting before step 0 is moved to
  start at 0 (mask all ones); positions past the episode end get mask 0.
  ``edge="pad"``: the window stays at its offset and positions before step 0
  get mask 0. Masked positions point at the nearest valid row of the same
  episode; a window never reads another episode. A window with no position
  inside its episode (e.g. starting past its end) is dropped.
* ``max_within``: at most N windows per name, the first N in dataset order
  (MineStudio, ``max_within_mode="first"``) or a seeded random choice.
* ``split``: ``"episode"`` mode (default) puts each episode in train or val by
  a seeded hash, so no episode is in both; ``"minestudio"`` mode takes the
  first ``int(n * split_ratio)`` windows of each name as train, the rest val.

``WindowQuery.minestudio(...)`` is the preset that reproduces MineStudio's
item list: ``min_step=128``, shift edges, first-N ``max_within``, per-name
split, and MineStudio's start ``max(i + bias - win_len, 0)`` (it does not
scale the start by ``skip_frame``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import numpy as np

from .index import EventIndex
from .query import WindowQuery

__all__ = ["Windows", "select_windows", "split_windows", "concat_windows", "episode_in_train",
           "unmatched_message"]

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass
class Windows:
    """Selected windows: one entry per window, in name order then dataset order."""

    names: np.ndarray
    name_id: np.ndarray
    episode: np.ndarray
    event_step: np.ndarray
    start: np.ndarray
    first_row: np.ndarray
    length: np.ndarray
    win_len: int
    skip_frame: int
    root_id: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return int(self.name_id.shape[0])

    def take(self, ids: np.ndarray) -> Windows:
        ids = np.asarray(ids, dtype=np.int64)
        return replace(self, name_id=self.name_id[ids], episode=self.episode[ids],
                       event_step=self.event_step[ids], start=self.start[ids],
                       first_row=self.first_row[ids], length=self.length[ids],
                       root_id=self.root_id[ids])

    def steps(self, ids: np.ndarray | None = None) -> np.ndarray:
        """Step of each position, ``int64 [n, win_len]`` (may be < 0 or >= length)."""
        start = self.start if ids is None else self.start[ids]
        return start[:, None] + np.arange(self.win_len, dtype=np.int64) * self.skip_frame

    def rows_and_mask(self, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Global rows ``int64 [n, win_len]`` and mask ``bool [n, win_len]`` of windows ``ids``."""
        sl = slice(None) if ids is None else ids
        s = self.steps(ids)
        length = self.length[sl][:, None]
        mask = (s >= 0) & (s < length)
        rows = self.first_row[sl][:, None] + np.clip(s, 0, length - 1)
        return rows, mask

    def counts(self) -> dict[str, int]:
        """Windows per name."""
        c = np.bincount(self.name_id, minlength=len(self.names))
        return {str(n): int(k) for n, k in zip(self.names, c) if k}


def _ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(a, b)`` for each pair, vectorised."""
    lens = stops - starts
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    out = np.ones(total, np.int64)
    keep = lens > 0
    starts, lens = starts[keep], lens[keep]
    pos = np.cumsum(lens)[:-1]
    out[0] = starts[0]
    out[pos] = starts[1:] - (starts[:-1] + lens[:-1] - 1)
    return np.cumsum(out)


def _group_starts(key: np.ndarray) -> np.ndarray:
    """Bool array: True where a run of equal ``key`` values starts."""
    first = np.ones(key.shape[0], bool)
    first[1:] = key[1:] != key[:-1]
    return first


def _min_nearby(gid: np.ndarray, step: np.ndarray, min_nearby: int) -> np.ndarray:
    """Keep mask of MineStudio's greedy spacing rule, per group ``gid`` (sorted, steps ascending)."""
    n = gid.shape[0]
    keep = np.zeros(n, bool)
    if n == 0:
        return keep
    # next candidate after j: first k in the same group with step[k] > step[j] + min_nearby
    big = np.int64(int(step.max()) + min_nearby + 2)
    key = gid.astype(np.int64) * big + step
    nxt = np.searchsorted(key, gid.astype(np.int64) * big + step + min_nearby, side="right")
    frontier = np.flatnonzero(_group_starts(gid))
    while frontier.size:
        keep[frontier] = True
        f = nxt[frontier]
        ok = f < n
        f, g = f[ok], gid[frontier[ok]]
        frontier = f[gid[f] == g]
    return keep


def episode_in_train(episode: np.ndarray, split_ratio: float, seed: int) -> np.ndarray:
    """Deterministic per-episode split: True for train (hash of ``(seed, episode)`` < ratio)."""
    x = (np.asarray(episode, dtype=np.int64).astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
         + np.uint64(0x632BE59BD9B4E019)) & _M64
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    u = (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return u < split_ratio


def select_windows(index: EventIndex, first_row: np.ndarray, length: np.ndarray, query: WindowQuery, *,
                   episodes: np.ndarray | None = None, split: bool = True) -> Windows:
    """The windows of ``query`` over a dataset with episode bounds ``(first_row, length)``.

    Args:
        index: the dataset's events.
        first_row, length: per-episode bounds (``ShardedStorage.episode_bounds``).
        query: the selection rules.
        episodes: optional episode ids allowed (e.g. from an SQL metadata filter).
        split: apply ``query.split``; pass False to split later (several roots).
    """
    first_row = np.asarray(first_row, np.int64)
    length = np.asarray(length, np.int64)
    ids = index.match(query.event_regex)
    if ids.size == 0:
        warnings.warn(unmatched_message(index, query.event_regex), stacklevel=2)
    pos = _ranges(index.offsets[ids], index.offsets[ids + 1])
    name_id = np.asarray(index.name_id[pos], np.int64)
    episode = np.asarray(index.episode[pos])
    step = np.asarray(index.step[pos])
    ok = (episode < len(length)) & (step >= query.min_step)
    if episodes is not None:
        allowed = np.zeros(len(length), bool)
        e = np.asarray(episodes, np.int64)
        allowed[e[(e >= 0) & (e < len(length))]] = True
        ok &= allowed[np.minimum(episode, max(len(length) - 1, 0))] if len(length) else False
    name_id, episode, step = name_id[ok], episode[ok], step[ok]
    if query.min_nearby is not None and name_id.size:
        gid = np.cumsum(_group_starts(name_id * (int(episode.max()) + 1) + episode)) - 1
        keep = _min_nearby(gid, step, int(query.min_nearby))
        name_id, episode, step = name_id[keep], episode[keep], step[keep]
    span = query.win_len if query.minestudio_start else query.win_len * query.skip_frame
    start = step + query.bias - span
    if query.edge == "shift":
        start = np.maximum(start, 0)
    ep_len = length[episode]
    last = start + (query.win_len - 1) * query.skip_frame
    keep = (start < ep_len) & (last >= 0)
    name_id, episode, step, start = name_id[keep], episode[keep], step[keep], start[keep]
    if query.max_within is not None and name_id.size:
        name_id, episode, step, start = _max_within(name_id, episode, step, start, query)
    w = Windows(names=index.names, name_id=name_id, episode=episode, event_step=step, start=start,
                first_row=first_row[episode], length=length[episode], win_len=query.win_len,
                skip_frame=query.skip_frame, root_id=np.zeros(name_id.shape[0], np.int64))
    return split_windows(w, query) if split else w


def unmatched_message(index: EventIndex, event_regex: str, top: int = 10) -> str:
    """One line saying ``event_regex`` matches no name of ``index``, with the ``top`` most frequent names."""
    counts = sorted(index.counts().items(), key=lambda kv: (-kv[1], kv[0]))
    if not counts:
        return f"`event_regex` {event_regex!r} matches no event: the index holds no events"
    listed = ", ".join(f"{name} ({n})" for name, n in counts[:top])
    more = f" and {len(counts) - top} more" if len(counts) > top else ""
    return (f"`event_regex` {event_regex!r} matches none of the {len(counts)} event names (re.match, anchored "
            f"at the start); events per name: {listed}{more}")


def _max_within(name_id, episode, step, start, query: WindowQuery):
    n = name_id.shape[0]
    group_first = np.flatnonzero(_group_starts(name_id))
    sizes = np.diff(np.append(group_first, n))
    if query.max_within_mode == "first":
        rank = np.arange(n) - np.repeat(group_first, sizes)
        keep = rank < query.max_within
    else:
        rng = np.random.default_rng(query.seed)
        order = np.lexsort((rng.random(n), name_id))
        rank = np.empty(n, np.int64)
        rank[order] = np.arange(n) - np.repeat(group_first, sizes)
        keep = rank < query.max_within
    return name_id[keep], episode[keep], step[keep], start[keep]


def split_windows(w: Windows, query: WindowQuery) -> Windows:
    """Keeps the train or val part of ``w`` (no-op when ``query.split`` is None)."""
    if query.split is None or len(w) == 0:
        return w
    if query.split_mode == "episode":
        train = episode_in_train(w.episode, query.split_ratio, query.seed)
    else:
        n = len(w)
        group_first = np.flatnonzero(_group_starts(w.name_id))
        sizes = np.diff(np.append(group_first, n))
        rank = np.arange(n) - np.repeat(group_first, sizes)
        cut = np.repeat((sizes * float(query.split_ratio)).astype(np.int64), sizes)
        train = rank < cut
    return w.take(np.flatnonzero(train if query.split == "train" else ~train))


def concat_windows(parts: list[Windows]) -> Windows:
    """Windows of several roots (``root_id`` = position in ``parts``), ordered by name then root.

    Names are unified into one sorted vocabulary (MineStudio's
    ``EventKernelManager``); inside a name, root order then dataset order.
    """
    vocab = np.unique(np.concatenate([p.names for p in parts])) if parts else np.zeros(0, str)
    cols = {k: [] for k in ("name_id", "episode", "event_step", "start", "first_row", "length", "root_id")}
    for r, p in enumerate(parts):
        remap = np.searchsorted(vocab, p.names).astype(np.int64)
        cols["name_id"].append(remap[p.name_id] if len(p) else np.zeros(0, np.int64))
        for k in ("episode", "event_step", "start", "first_row", "length"):
            cols[k].append(getattr(p, k))
        cols["root_id"].append(np.full(len(p), r, np.int64))
    cat = {k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in cols.items()}
    order = np.lexsort((np.arange(len(cat["name_id"])), cat["root_id"], cat["name_id"]))
    cat = {k: v[order] for k, v in cat.items()}
    win_len = parts[0].win_len if parts else 1
    skip = parts[0].skip_frame if parts else 1
    return Windows(names=vocab, win_len=win_len, skip_frame=skip, **cat)
