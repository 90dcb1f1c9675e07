"""Pure-Python reference of the event window rules (MineStudio's loop-per-event approach).

Used by the property tests and the benchmark; deliberately simple and slow.
"""

from __future__ import annotations

import random
import re


def naive_windows(events, lengths, *, regex=".*", win_len=1, bias=0, skip_frame=1, min_nearby=None,
                  max_within=None, max_within_mode="first", edge="shift", min_step=0, seed=0,
                  minestudio_start=False):
    """Windows as a list of ``(name, episode, event_step, start)``.

    Args:
        events: iterable of ``(name, episode, step)``.
        lengths: episode lengths, indexed by episode id.
    """
    pattern = re.compile(regex)
    names = sorted({n for n, _, _ in events if pattern.match(n)})
    out = []
    for name in names:
        evs = sorted((e, s) for n, e, s in events if n == name)
        last: dict[int, int] = {}
        kept = []
        for e, s in evs:
            if e >= len(lengths) or s < min_step:
                continue
            if min_nearby is not None and e in last and s - last[e] <= min_nearby:
                continue
            last[e] = s
            span = win_len if minestudio_start else win_len * skip_frame
            start = s + bias - span
            if edge == "shift":
                start = max(start, 0)
            if start >= lengths[e] or start + (win_len - 1) * skip_frame < 0:
                continue
            kept.append((name, e, s, start))
        if max_within is not None:
            if max_within_mode == "first":
                kept = kept[:max_within]
            else:
                chosen = set(random.Random(seed).sample(range(len(kept)), min(max_within, len(kept))))
                kept = [k for i, k in enumerate(kept) if i in chosen]
        out.extend(kept)
    return out


def naive_rows_and_mask(window, first_rows, lengths, win_len, skip_frame=1):
    """Global rows and mask of one ``(name, episode, event_step, start)`` window."""
    _, e, _, start = window
    rows, mask = [], []
    for k in range(win_len):
        s = start + k * skip_frame
        mask.append(0 <= s < lengths[e])
        rows.append(first_rows[e] + min(max(s, 0), lengths[e] - 1))
    return rows, mask


def naive_minestudio_split(windows, split, ratio):
    """MineStudio's split: the first ``int(n * ratio)`` windows of each name are train."""
    out = []
    names = sorted({w[0] for w in windows})
    for name in names:
        items = [w for w in windows if w[0] == name]
        cut = int(len(items) * ratio)
        out.extend(items[:cut] if split == "train" else items[cut:])
    return out
