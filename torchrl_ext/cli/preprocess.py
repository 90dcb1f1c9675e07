"""``torchrl-ext preprocess SRC DEST --preset ...``: a preprocessed copy of a dataset.

The presets are :mod:`torchrl_ext.preprocessing.presets`, applied in the
order given, in one pass of :func:`torchrl_ext.preprocess`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["PRESETS", "add_parser", "build_fn", "run"]

# preset name -> (argument names, what it does)
PRESETS: dict[str, tuple[tuple[str, ...], str]] = {
    "resize": (("H", "W"), "bilinear antialiased resize to H x W pixels, same dtype"),
    "grayscale": ((), "RGB (channels last or first) -> luma, same dtype"),
    "stack": (("N",), "last N frames of the episode (its first frame repeats)"),
    "float": ((), "uint8 -> float32 divided by 255"),
}


def _presets_help() -> str:
    lines = ["presets (--preset NAME [ARG ...], repeatable, applied in order):"]
    for name, (params, what) in PRESETS.items():
        lines.append(f"  {' '.join((name, *params)):<12} {what}")
    lines.append("")
    lines.append("example: torchrl-ext preprocess data/pong data/pong-64x64x4 "
                 "--preset resize 64 64 --preset stack 4 --preset float")
    return "\n".join(lines)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "preprocess",
        description="Write a preprocessed copy of the dataset SRC to DEST, shard-parallel and resumable: "
                    "each preset transforms the observation column and its next value; every other "
                    "column, the episode table and the event logs carry over.",
        epilog=_presets_help(),
    )
    p.add_argument("src", help="source dataset directory")
    p.add_argument("dest", help="new dataset directory (an interrupted run there is resumed)")
    p.add_argument("--preset", nargs="+", action="append", required=True, metavar=("NAME", "ARG"),
                   help="a preset and its arguments, see below; repeat to chain")
    p.add_argument("--key", default="observation",
                   help="the observation column to transform; a nested one as its path, e.g. observation/image")
    p.add_argument("--workers", type=int, default=None,
                   help="parallel workers, 0 runs in this process (default: number of CPUs)")
    p.add_argument("--batch-rows", type=int, default=None,
                   help="rows per function call (default: about 8 MiB of source rows)")
    p.add_argument("--executor", choices=("process", "thread", "serial"), default="process",
                   help="how workers run")
    p.add_argument("--num-rows", type=int, default=None,
                   help="only the first NUM_ROWS rows, rounded down to whole episodes (default: all)")
    p.add_argument("--overwrite", action="store_true", help="discard whatever output is at DEST first")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    p.set_defaults(func=run)


def _ints(name: str, args: Sequence[str], count: int) -> list[int]:
    params = " ".join(PRESETS[name][0])
    if len(args) != count:
        raise ValueError(f"preset {name!r} takes {count} argument(s){' ' + params if params else ''}, got "
                         f"{list(args)}; e.g. --preset {' '.join((name, *(['84'] * count)))}")
    try:
        values = [int(a) for a in args]
    except ValueError:
        raise ValueError(f"preset {name!r} takes integer {params}, got {list(args)}") from None
    if any(v < 1 for v in values):
        raise ValueError(f"preset {name!r} takes positive {params}, got {values}")
    return values


def build_fn(specs: Sequence[Sequence[str]], src: str,
             key: str | tuple[str, ...] = "observation") -> Callable[[Any], Any]:
    """The function of ``--preset`` arguments, e.g. ``[["resize", "64", "64"], ["float"]]``.

    Args:
        specs: one ``[name, *args]`` list per ``--preset``.
        src: the source dataset (the frame stack reads earlier frames from it).
        key: the observation column (a nested key as a tuple).

    Returns:
        A :class:`torchrl_ext.preprocessing.presets.Chain`.

    Raises:
        ValueError: an unknown preset or wrong arguments.
    """
    parsed = []
    for name, *args in specs:  # every spec is checked before torch loads
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
        parsed.append((name, _ints(name, args, len(PRESETS[name][0]))))
    from ..preprocessing import FrameStack, Grayscale, Resize, ToFloat, chain

    make = {"resize": lambda h, w: Resize(h, w, key=key), "stack": lambda n: FrameStack(src, n, key=key),
            "grayscale": lambda: Grayscale(key=key), "float": lambda: ToFloat(key=key)}
    return chain(*(make[name](*values) for name, values in parsed))


def run(args: argparse.Namespace) -> int:
    key = tuple(args.key.split("/"))
    fn = build_fn(args.preset, args.src, key)
    from .. import preprocess

    out = preprocess(args.src, fn, args.dest, num_workers=args.workers, batch_rows=args.batch_rows,
                     executor=args.executor, overwrite=args.overwrite, num_rows=args.num_rows,
                     pbar=args.progress)
    col = out.manifest.column(key)
    print(f"{out.root}: {len(out)} rows, {out.num_episodes} episodes, {args.key} "
          f"{col.dtype.name} {list(col.shape)}")
    return 0
