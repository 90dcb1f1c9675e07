"""``torchrl-ext verify ROOT``: recompute every shard's checksum against the manifest."""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify",
        description="Open a dataset and recompute every shard's checksum, one shard at a time, against "
                    "its manifest. Exit status 0 when every shard matches, 1 when the dataset is "
                    "corrupt (the first bad shard is named), 2 for a usage error.",
    )
    p.add_argument("root", help="dataset directory")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="do not show the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ..format import FormatError
    from ..storages import ShardedStorage
    from ..storages.integrity import uncovered

    try:
        storage = ShardedStorage(args.root)
        with tqdm(total=storage.num_shards, unit="shard", desc=f"verify {args.root}",
                  disable=not args.progress) as bar:
            storage.verify(progress=lambda shard: bar.update(1))
    except FormatError as err:
        print(f"torchrl-ext verify: corrupt: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    m = storage.manifest
    nbytes = sum(s.bytes for s in m.shards)
    print(f"ok: {storage.num_shards} shards, {len(storage)} rows, {nbytes} bytes match their checksums "
          f"in {storage.root}")
    missing = uncovered(m)
    if missing:
        print(f"not checked (the dataset was written before their checksums were recorded): {'; '.join(missing)}")
    return 0
