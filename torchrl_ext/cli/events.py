"""``torchrl-ext events ROOT [--build] --regex ...``: save the event index; count events and windows.

``--build`` is the explicit step that writes ``ROOT/events/index/`` (with
``--column`` / ``--counters`` derivations); without it the command only
reads, like the sampler and the dataset. ``ROOT`` may be a URL
(``gs://bucket/prefix``), read through the local cache; an index is built
where the dataset is written, so ``--build`` refuses a URL.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..events import EventIndex, WindowQuery


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("events", help="build the event index; count events and windows matching a regex",
                       description="Count events and windows per event name. With --build, first build the "
                                   "event index from the event logs and save it; otherwise only read it.")
    p.add_argument("root", help="dataset directory, or a URL such as gs://bucket/prefix (read only)")
    p.add_argument("--build", "--rebuild", dest="build", action="store_true",
                   help="build the event index from the event logs and save it to ROOT/events/index, keeping "
                        "the derived events of the saved index unless --column/--counters/--no-derived say "
                        "otherwise (default: off, only read it)")
    p.add_argument("--no-derived", action="store_true",
                   help="with --build: derive no events from columns, even if the saved index did (default: off)")
    p.add_argument("--column", nargs=2, action="append", default=[], metavar=("PREFIX", "KEY"),
                   help="with --build: also derive events PREFIX:+1 / PREFIX:-1 from the sign of the scalar "
                        "column KEY (parts joined by '/', e.g. next/reward); repeatable (default: none)")
    p.add_argument("--counters", action="append", default=[], metavar="KEY",
                   help="with --build: also derive events from the counter columns under KEY (e.g. "
                        "info/stats); repeatable (default: none)")
    p.add_argument("--regex", default=".*", help="re.match against event names (default: %(default)s)")
    p.add_argument("--win-len", type=int, default=1, help="rows per window (default: %(default)s)")
    p.add_argument("--bias", type=int, default=0,
                   help="window end relative to the event step (default: %(default)s)")
    p.add_argument("--skip-frame", type=int, default=1, help="steps between window rows (default: %(default)s)")
    p.add_argument("--min-nearby", type=int, default=None,
                   help="drop an event within this many steps of the last kept one (default: %(default)s)")
    p.add_argument("--max-within", type=int, default=None,
                   help="keep at most this many windows per event name (default: %(default)s)")
    p.add_argument("--edge", choices=("shift", "pad"), default=None,
                   help="windows crossing the episode start: shift them or pad with a mask (default: shift)")
    p.add_argument("--min-step", type=int, default=None,
                   help="drop events before this step (default: 0, or 128 with --compat minestudio)")
    p.add_argument("--compat", choices=("minestudio",), default=None,
                   help="MineStudio 1.1.6 defaults (default: %(default)s)")
    p.add_argument("--where", default=None, help="SQL WHERE over the episode table (default: %(default)s)")
    p.set_defaults(func=run)


def format_events(root: str, query: WindowQuery, *, where: str | None = None,
                  index: EventIndex | None = None) -> str:
    """The table ``torchrl-ext events`` prints: events and windows per matching name, and totals.

    ``index`` defaults to :meth:`EventIndex.open` of ``root`` (read only).
    """
    from ..events import EventIndex, select_windows
    from ..storages import ShardedStorage

    storage = ShardedStorage(root)  # a URL opens once; the index is read from the same local directory
    index = EventIndex.open(storage.root) if index is None else index
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
    from ..events import INDEX_DIR, EventIndex, WindowQuery

    if (args.column or args.counters or args.no_derived) and not args.build:
        raise ValueError("`--column`, `--counters` and `--no-derived` need `--build` (they are stored in the saved "
                         "index)")
    query = WindowQuery.from_options(
        args.compat, event_regex=args.regex, win_len=args.win_len, bias=args.bias, skip_frame=args.skip_frame,
        min_nearby=args.min_nearby, max_within=args.max_within, edge=args.edge, min_step=args.min_step)
    index = None
    if args.build:
        columns = {prefix: tuple(key.split("/")) for prefix, key in args.column}
        counters = [tuple(key.split("/")) for key in args.counters]
        if columns or counters or args.no_derived:
            index = EventIndex.rebuild(args.root, columns=columns, counters=counters)
        else:  # the saved index's derivations, as they were
            index = EventIndex.rebuild(args.root)
        print(f"saved {args.root}/{INDEX_DIR}: {len(index)} events, {len(index.names)} names")
    print(format_events(args.root, query, where=args.where, index=index))
    return 0
