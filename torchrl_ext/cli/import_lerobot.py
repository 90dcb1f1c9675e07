"""``torchrl-ext import lerobot DIR --root ROOT``: a LeRobot v3.0 dataset directory -> a sharded dataset."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(kinds: argparse._SubParsersAction, name: str, help_: str) -> None:
    p = kinds.add_parser(
        name, help=help_,
        description="Import the LeRobot v3.0 dataset in DIR (meta/info.json, meta/episodes/, data/, videos/, as "
                    "lerobot 0.4 writes them; no lerobot package needed) into ROOT: features as nested columns "
                    "(observation.state -> observation/state), h264 and AV1 videos stored as LeRobot's own chunks "
                    "(other codecs decoded once), tasks as episode metadata and task:<text> events. Run again to resume "
                    "an interrupted import.",
    )
    p.add_argument("dir", help="LeRobot dataset directory (holds meta/info.json)")
    p.add_argument("--root", required=True, help="dataset directory to write (or resume)")
    p.add_argument("--frames", choices=("auto", "zstd", "video"), default="auto",
                   help="how video frames are stored: auto keeps h264 and yuv420p AV1 as they are and decodes other "
                        "codecs to lossless zstd; zstd decodes every video; video keeps h264 and encodes other codecs as h264")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..interop.lerobot import LeRobotLayout, import_lerobot
    from ..validation import user_path

    encodings = None
    if args.frames != "auto":
        layout = LeRobotLayout(user_path(args.dir, "dir").resolve())
        encodings = {n: args.frames for n in layout.video_keys}
    stats = import_lerobot(args.dir, args.root, encodings=encodings, progress=args.progress)
    print(f"{stats.root}: {stats.episodes} episodes imported ({stats.kept} already there), {stats.frames} frames, "
          f"{stats.passthrough_chunks} video chunks stored as they are, {stats.decoded_episodes} episode videos "
          f"decoded, {stats.seconds:.1f} s")
    return 0
