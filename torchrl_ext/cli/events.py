"""``torchrl-ext events ROOT --regex ...``: events per name and windows of a query."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..events import WindowQuery


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("events", help="count events and windows matching a regex")
    p.add_argument("root", help="dataset directory")
    p.add_argument("--regex", default=".*", help="re.match against event names (default: all)")
    p.add_argument("--win-len", type=int, default=1)
    p.add_argument("--bias", type=int, default=0)
    p.add_argument("--skip-frame", type=int, default=1)
    p.add_argument("--min-nearby", type=int, default=None)
    p.add_argument("--max-within", type=int, default=None)
    p.add_argument("--edge", choices=("shift", "pad"), default="shift")
    p.add_argument("--min-step", type=int, default=0)
    p.add_argument("--where", default=None, help="SQL WHERE over the episode table")
    p.add_argument("--rebuild", action="store_true", help="rebuild the index from the event logs first")
    p.set_defaults(func=run)


def format_events(root: str, query: WindowQuery, *, where: str | None = None, rebuild: bool = False) -> str:
    """The text ``torchrl-ext events`` prints."""
    from ..events import EventIndex, select_windows
    from ..storages import ShardedStorage

    index = EventIndex.build(root) if rebuild else EventIndex.open(root)
    storage = ShardedStorage(root)
    eps = storage.select_episodes(where)
    first, length = storage.episode_bounds
    windows = select_windows(index, first, length, query, episodes=eps)
    events = index.counts()
    per_name = windows.counts()
    matched = [str(index.names[i]) for i in index.match(query.event_regex)]
    lines = [f"{'event':<40} {'events':>10} {'windows':>10}"]
    for name in matched:
        lines.append(f"{name:<40} {events[name]:>10} {per_name.get(name, 0):>10}")
    lines.append(f"{'total':<40} {sum(events[n] for n in matched):>10} {len(windows):>10}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..events import WindowQuery

    query = WindowQuery(event_regex=args.regex, win_len=args.win_len, bias=args.bias,
                        skip_frame=args.skip_frame, min_nearby=args.min_nearby,
                        max_within=args.max_within, edge=args.edge, min_step=args.min_step)
    print(format_events(args.root, query, where=args.where, rebuild=args.rebuild))
    return 0
