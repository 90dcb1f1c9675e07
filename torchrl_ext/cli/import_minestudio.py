"""``torchrl-ext import minestudio DIR... --root ROOT``: MineStudio 1.1.6 dataset directories -> sharded datasets."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(kinds: argparse._SubParsersAction, name: str, help_: str) -> None:
    p = kinds.add_parser(
        name, help=help_,
        description="Import MineStudio 1.1.6 dataset directories (image/, action/, meta_info/, event/ as "
                    "MineStudio's conversion tools write them) into ROOT: h264 image chunks are stored as they "
                    "are (others are encoded once), actions and numeric meta_info as columns, events with "
                    "MineStudio's names, and the event index is built. Run again to resume an interrupted import.",
    )
    p.add_argument("dirs", nargs="+", metavar="DIR", help="MineStudio dataset directories, imported in this order")
    p.add_argument("--root", required=True, help="dataset directory to write (or resume)")
    p.add_argument("--separate", action="store_true",
                   help="one dataset per DIR, ROOT/<DIR name> (what EventWindowDataset(dataset_dirs=[...]) reads "
                        "as MineStudio does: min_nearby/max_within per directory)")
    p.add_argument("--modalities", nargs="+", choices=("image", "action", "meta_info", "segment"), default=None,
                   help="modalities to import (default: image, plus action, meta_info and segment when present)")
    p.add_argument("--reencode", action="store_true", help="decode and encode every image chunk again")
    p.add_argument("--check-decode", action=argparse.BooleanOptionalAction, default=True,
                   help="decode each chunk stored as it is once, strictly, and stop before an episode whose chunk "
                        "fails: MineStudio's chunks have no checksum, so damage from before the import is found "
                        "only this way (--no-check-decode skips it)")
    p.add_argument("--crf", type=int, default=20, help="h264 quality of chunks that are encoded again")
    p.add_argument("--shard-chunks", type=int, default=128, help="image chunks (MineStudio's chunk_size frames each) per shard")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.shard_chunks < 1:
        raise ValueError(f"`--shard-chunks` must be a positive int, got {args.shard_chunks}")
    from ..interop.minestudio import MineStudioLayout, import_minestudio, separate_roots

    jobs = (list(zip([[d] for d in args.dirs], separate_roots(args.dirs, args.root))) if args.separate
            else [(args.dirs, args.root)])
    chunk_size = MineStudioLayout(args.dirs[0], ("image",)).chunk_size
    for dirs, root in jobs:
        stats = import_minestudio(dirs, root, modalities=args.modalities, shard_rows=args.shard_chunks * chunk_size,
                                  passthrough=not args.reencode, check_decode=args.check_decode, crf=args.crf,
                                  progress=args.progress)
        print(f"{root}: {stats.episodes} episodes imported ({stats.kept} already there, {stats.left_out} left out), "
              f"{stats.frames} frames, {stats.passthrough_chunks} chunks stored as they are, "
              f"{stats.reencoded_chunks} encoded again, {stats.events} events, {stats.checked_chunks} chunks "
              f"checked by decoding, {stats.seconds:.1f} s")
    return 0
