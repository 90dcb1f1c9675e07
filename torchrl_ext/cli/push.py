"""``torchrl-ext push ROOT URL``: publish a dataset directory to a bucket, its manifest last."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "push",
        description="Upload the dataset in ROOT to URL (gs://bucket/prefix; other schemes through fsspec): every "
                    "file its manifest names, then dataset.json last, so a reader of URL sees the previous "
                    "dataset or the new one, never half of one. Objects already there with the same crc32c are "
                    "skipped: run it again to resume an interrupted push. Readers then open URL directly "
                    "(ShardedStorage('gs://...'), torchrl-ext info URL).",
    )
    p.add_argument("root", help="dataset directory to upload")
    p.add_argument("url", help="where to publish it, e.g. gs://bucket/prefix")
    p.add_argument("--threads", type=int, default=8, help="parallel uploads")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="do not show the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..remote.publish import push

    result = push(args.root, args.url, threads=args.threads, progress=args.progress)
    print(f"pushed {args.root} to {result.url}: {result.uploaded} uploaded, {result.skipped} skipped (already "
          f"there), {result.bytes_uploaded} bytes")
    return 0
