"""``torchrl-ext import crowdplay DIR --root ROOT``: a CrowdPlay dataset directory -> a sharded dataset."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(kinds: argparse._SubParsersAction, name: str, help_: str) -> None:
    p = kinds.add_parser(
        name, help=help_,
        description="Import the CrowdPlay dataset in DIR (the folder holding dataset.sqlite; trajectory files "
                    "are found under it) into ROOT: one episode per (episode, agent), frames stored losslessly, "
                    "every keyword datum as typed episode metadata. Run again to resume an interrupted import.",
    )
    p.add_argument("dir", help="CrowdPlay dataset directory (holds dataset.sqlite)")
    p.add_argument("--root", required=True, help="dataset directory to write (or resume)")
    p.add_argument("--encoding", choices=("zstd", "raw"), default="zstd",
                   help="frames and RAM as lossless zstd chunks, or raw memory-mapped columns")
    p.add_argument("--shard-mib", type=int, default=256, help="raw MiB per shard")
    p.add_argument("--skip-missing", action="store_true",
                   help="skip episodes whose trajectory file is missing instead of failing")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.shard_mib < 1:
        raise ValueError(f"`--shard-mib` must be a positive int, got {args.shard_mib}")
    from ..interop.crowdplay import DEFAULT_ENCODINGS, import_crowdplay

    storage = import_crowdplay(args.dir, args.root, encodings=DEFAULT_ENCODINGS if args.encoding == "zstd" else {},
                               shard_bytes=args.shard_mib << 20, skip_missing=args.skip_missing,
                               progress=args.progress)
    print(f"{storage.root}: {storage.num_episodes} episodes, {len(storage)} frames, {storage.num_shards} shards")
    return 0
