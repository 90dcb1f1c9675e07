"""``torchrl-ext download atari-dqn Pong/1 --root DIR``: fetch and convert a dataset."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "parse_checkpoints", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "download",
        description="Download a dataset from its public bucket and convert it to a sharded dataset. "
                    "Interrupted downloads resume from their .part files when run again.",
    )
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND", title="datasets")
    a = kinds.add_parser(
        "atari-dqn", help="one run of the Atari DQN Replay Dataset, e.g. Pong/1",
        description="Download one run of the Atari DQN Replay Dataset (gs://atari-replay-datasets/dqn) "
                    "and convert it into ROOT/<game>/<run>. Set STORAGE_EMULATOR_HOST=http://host:port "
                    "to read from a mirror server.",
    )
    a.add_argument("dataset_id", nargs="+", help="<game>/<run>, e.g. Pong/1 (several: converted as one task each)")
    a.add_argument("--root", required=True, help="directory holding converted datasets")
    a.add_argument("--bucket", default=None, help="GCS bucket (default: atari-replay-datasets)")
    a.add_argument("--prefix", default=None, help="top-level prefix in the bucket (default: dqn)")
    a.add_argument("--local-dir", default=None,
                   help="read replay logs from this directory instead of downloading (default: download)")
    a.add_argument("--checkpoints", default=None,
                   help="comma-separated checkpoint indices or ranges, e.g. 0-4,49 (default: all)")
    a.add_argument("--num-procs", type=int, default=1, help="runs converted at once (default: 1)")
    a.add_argument("--executor", choices=("process", "ray"), default="process",
                   help="where runs are converted (default: process)")
    a.add_argument("--address", default=None, help="Ray cluster address (default: a private local cluster)")
    a.add_argument("--keep-download", action="store_true",
                   help="keep the .gz files in ROOT/.downloads (default: stream them, store nothing)")
    a.add_argument("--force", action="store_true", help="convert again even if done")
    a.add_argument("--deadline", type=float, default=600.0,
                   help="seconds the listing, or a download without data, may take before the command "
                        "fails (rerun to resume); a server that never answers fails within min(60, this)")
    a.add_argument("--encoding", default="zstd-dict", choices=("zstd-dict", "zstd", "raw"),
                   help="observation frames: zstd per frame with a dictionary (random sampling), "
                        "zstd chunks of 16 frames (smallest, windows) or raw memory maps")
    p.set_defaults(func=run)


def parse_checkpoints(text: str | None) -> list[int] | None:
    """``"0-2,7"`` -> ``[0, 1, 2, 7]``.

    Example:
        >>> parse_checkpoints("0-2,7")
        [0, 1, 2, 7]
    """
    if text is None:
        return None
    out: list[int] = []
    try:
        for part in filter(None, text.split(",")):
            a, _, b = part.partition("-")
            out.extend(range(int(a), int(b or a) + 1))
    except ValueError:
        raise ValueError(f"`--checkpoints` must look like 0-4,49, got {text!r}") from None
    return out


def run(args: argparse.Namespace) -> int:
    from ..interop.atari_dqn import prepare_atari_dqn

    paths = prepare_atari_dqn(
        args.dataset_id, args.root, download="force" if args.force else True,
        local_dir=args.local_dir, bucket=args.bucket, prefix=args.prefix,
        checkpoints=parse_checkpoints(args.checkpoints), num_procs=args.num_procs,
        keep_download=args.keep_download, executor=args.executor, address=args.address,
        encodings=None if args.encoding == "zstd-dict" else {"observation": args.encoding},
        deadline=args.deadline,
    )
    for path in paths:
        print(path)
    return 0
