"""``torchrl-ext generate``: play Atari episodes in parallel workers into a dataset."""

from __future__ import annotations

import argparse

__all__ = ["EXECUTORS", "add_parser", "run"]

# The executors torchrl_ext.generate.generate accepts (kept equal to its EXECUTORS by a test).
EXECUTORS = ("process", "ray")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        description="Play Atari episodes with a random policy in parallel workers and write them into a "
                    "dataset, in episode order. An existing dataset at ROOT is resumed: its committed "
                    "episodes are kept and generation continues up to --episodes in total.",
    )
    p.add_argument("--env", default="ALE/Pong-v5", help="Gymnasium ALE id (84x84 grayscale, frame skip 4)")
    p.add_argument("--episodes", type=int, required=True, help="total episodes the dataset should hold")
    p.add_argument("--workers", type=int, default=2, help="parallel worker processes (or Ray actors)")
    p.add_argument("--root", required=True, help="dataset directory (resumed when it exists)")
    p.add_argument("--max-steps", type=int, default=27_000, help="truncate episodes after this many steps")
    p.add_argument("--seed", type=int, default=0, help="episode i is reset with seed + i")
    p.add_argument("--executor", choices=EXECUTORS, default="process",
                   help="local worker processes, or Ray actors (pip install torchrl-ext[ray])")
    p.add_argument("--max-restarts", type=int, default=3,
                   help="restarts allowed per worker after it crashes")
    p.add_argument("--encoding", default="zstd", choices=("raw", "zstd", "video"),
                   help="encoding of the observation frames of a new dataset")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import functools

    from ..generate import generate, make_atari_env

    stats = generate(functools.partial(make_atari_env, args.env), None, args.root,
                     num_episodes=args.episodes, num_workers=args.workers, max_steps=args.max_steps,
                     executor=args.executor, max_restarts=args.max_restarts, seed=args.seed,
                     encodings={"observation": args.encoding})
    print(f"generated {stats.generated} episodes ({stats.steps} steps, {stats.steps_per_second:.0f} steps/s), "
          f"kept {stats.skipped} already in {args.root}, {stats.restarts} worker restart(s)")
    return 0
