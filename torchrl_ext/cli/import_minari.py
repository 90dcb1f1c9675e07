"""``torchrl-ext import minari NAME_OR_DIR --root ROOT``: a local Minari dataset -> a sharded dataset."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(kinds: argparse._SubParsersAction, name: str, help_: str) -> None:
    p = kinds.add_parser(
        name, help=help_,
        description="Import a local Minari dataset (HDF5, Arrow or Parquet backend) into ROOT: one episode per "
                    "Minari episode in TorchRL's TED layout, Dict and Tuple spaces as nested keys, infos that are "
                    "arrays of numbers as info/... columns, the dataset's metadata in the manifest. Run again to "
                    "resume an interrupted import.",
    )
    p.add_argument("source", metavar="NAME_OR_DIR",
                   help="a Minari dataset id (found in $MINARI_DATASETS_PATH, else ~/.minari/datasets) or the "
                        "dataset's directory")
    p.add_argument("--root", required=True, help="dataset directory to write (or resume)")
    p.add_argument("--encoding", choices=("zstd", "video", "raw"), default="zstd",
                   help="frames (uint8 observations of at least 16x16) as lossless zstd chunks, lossy h264 video "
                        "chunks, or raw memory-mapped columns; every other column is raw")
    p.add_argument("--no-infos", dest="infos", action="store_false", help="leave Minari's infos out")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..interop.minari import (
        FRAME_ENCODING,
        MinariSource,
        frame_encodings,
        import_minari,
    )

    encoding = {"zstd": FRAME_ENCODING, "video": "video", "raw": None}[args.encoding]
    encodings = {} if encoding is None else frame_encodings(MinariSource.find(args.source), encoding)
    storage = import_minari(args.source, args.root, encodings=encodings, infos=args.infos, progress=args.progress)
    print(f"{storage.root}: {storage.num_episodes} episodes, {len(storage)} steps, {storage.num_shards} shards")
    return 0
