"""``torchrl-ext download``: fetch and convert a dataset, or a selection of a pushed one.

``download atari-dqn Pong/1 --root DIR`` converts a run of the Atari DQN
logs. ``download gs://bucket/prefix --root DIR [--where SQL] [--events REGEX
--win-len N]`` (short for ``download dataset URL ...``) writes the episodes
of a pushed dataset that the query selects as a local dataset, fetching only
the shards they lie in (:func:`torchrl_ext.export.download_dataset`).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping
from typing import Any

from ..remote.urls import is_remote

__all__ = ["DATASET_KIND", "add_parser", "parse_checkpoints", "run", "run_dataset"]

DATASET_KIND = "dataset"


class _KindsOrURL:
    """The choices of the dataset kind: the kinds' names, and any URL (which stands for ``dataset URL``)."""

    def __init__(self, kinds: Mapping[str, Any]) -> None:
        self.kinds = kinds

    def __contains__(self, value: object) -> bool:
        return value in self.kinds or is_remote(value)

    def __iter__(self) -> Iterator[str]:
        return iter(self.kinds)


class _Kinds(argparse._SubParsersAction):
    """The ``KIND`` of ``download``; a URL in its place reads as ``dataset URL``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.choices = _KindsOrURL(self._name_parser_map)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if values and values[0] not in self._name_parser_map and is_remote(values[0]):
            values = [DATASET_KIND, *values]
        super().__call__(parser, namespace, values, option_string)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "download",
        description="Download a dataset from its public bucket and convert it to a sharded dataset, or the "
                    "episodes of a pushed dataset a query selects (download gs://bucket/prefix --root DIR). "
                    "Interrupted downloads resume when run again (Atari logs from their .part files).",
    )
    p.register("action", "parsers", _Kinds)
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
    a.set_defaults(func=run)
    _add_dataset_parser(kinds)


def _add_dataset_parser(kinds: argparse._SubParsersAction) -> None:
    d = kinds.add_parser(
        DATASET_KIND, help="episodes of a dataset pushed to a bucket, by URL (`download URL` for short)",
        description="Write the episodes of the dataset at URL (gs://bucket/prefix, pushed with "
                    "torchrl_ext.remote.publish.push) that --where and --events select as a new local dataset "
                    "at ROOT: whole episodes, renumbered from 0, with their episode-table rows and events. "
                    "Only the shards those episodes lie in are fetched, verified, into the cache. "
                    "`download URL ...` is short for `download dataset URL ...`; run again to resume.",
    )
    d.add_argument("url", metavar="URL", help="the dataset's URL, e.g. gs://bucket/prefix")
    d.add_argument("--root", required=True, help="the new dataset directory")
    d.add_argument("--where", default=None,
                   help='SQL WHERE over the episode table, e.g. "Score >= 100" (default: every episode)')
    d.add_argument("--events", dest="event_regex", default=None, metavar="REGEX",
                   help="keep only episodes with a window around an event whose name matches REGEX (re.match), "
                        "e.g. 'kill_entity:.*' (default: no event filter)")
    d.add_argument("--win-len", type=int, default=None,
                   help="steps in each window before the event (default: none; required with --events)")
    d.add_argument("--bias", type=int, default=0, help="steps the windows are shifted by")
    d.add_argument("--cache-dir", default=None,
                   help="where fetched shards are cached (default: $TORCHRL_EXT_CACHE or ~/.cache/torchrl_ext/remote)")
    d.add_argument("--disk-cache-bytes", type=int, default=None,
                   help="bytes the cached shards may occupy (default: no limit)")
    d.add_argument("--threads", type=int, default=8, help="shards fetched at once")
    d.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bars")
    d.set_defaults(func=run_dataset)


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


def run_dataset(args: argparse.Namespace) -> int:
    from ..export import download_dataset

    result = download_dataset(args.url, args.root, where=args.where, event_regex=args.event_regex,
                              win_len=args.win_len, bias=args.bias, cache_dir=args.cache_dir,
                              disk_cache_bytes=args.disk_cache_bytes, threads=args.threads, progress=args.progress)
    print(result.root)
    return 0
