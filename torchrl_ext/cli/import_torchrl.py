"""``torchrl-ext import torchrl DIR --root ROOT``: a TorchRL buffer saved on disk -> a sharded dataset."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(kinds: argparse._SubParsersAction, name: str, help_: str) -> None:
    p = kinds.add_parser(
        name, help=help_,
        description="Import the TorchRL replay buffer in DIR (written by rb.dumps(DIR), or a memmap TensorDict "
                    "directory such as a LazyMemmapStorage's scratch_dir or TorchRL's dataset wrappers' data) "
                    "into ROOT: episodes grouped by their id column or split on done, frame columns compressed. "
                    "Run again to resume an interrupted import.",
    )
    p.add_argument("dir", help="the saved buffer (holds storage/meta.json or meta.json)")
    p.add_argument("--root", required=True, help="dataset directory to write (or resume)")
    p.add_argument("--episode-key", default="auto",
                   help="column naming each row's episode, as a path (e.g. collector/traj_ids); 'auto' takes the "
                        "first of episode, collector/traj_ids, traj_ids; 'none' splits after next/done")
    p.add_argument("--encoding", choices=("zstd", "raw"), default="zstd",
                   help="uint8 frame columns as lossless zstd chunks, or every column raw")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..interop.torchrl_buffers import import_torchrl_buffer

    key = {"auto": "auto", "none": None}.get(args.episode_key, tuple(args.episode_key.split("/")))
    storage = import_torchrl_buffer(args.dir, args.root, episode_key=key,
                                    encodings=None if args.encoding == "zstd" else {}, progress=args.progress)
    print(f"{storage.root}: {storage.num_episodes} episodes, {len(storage)} rows, {storage.num_shards} shards")
    return 0
