"""``make demo``: Pong episodes generated in parallel, indexed by event, sampled as windows around points.

Run as ``python -m torchrl_ext.demo --root DIR``. Needs no network: the Pong
ROM ships in the ale-py wheel. Steps: play ``--episodes`` random-policy Pong
episodes (84x84 grayscale, frame skip 4) in ``--workers`` processes straight
into a sharded dataset, frames compressed losslessly (``zstd``); build the event index; sample windows of 32 steps
around ``reward:.*`` events through a TorchRL replay buffer; print a summary
and write a preview PNG of a few windows with the event frame marked.
"""

from __future__ import annotations

import argparse
import functools
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torchrl.data import TensorDictReplayBuffer

from .events import EventIndex
from .generate import generate, make_atari_env
from .samplers import EventSliceSampler
from .storages import ShardedStorage
from .validation import user_path

WIN_LEN, BIAS = 32, 4


def _du(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def _saving(storage: ShardedStorage) -> str:
    col = storage.manifest.column(("observation",))
    raw = len(storage) * col.row_bytes
    stored = sum(f.stat().st_size for s in storage.manifest.shards
                 for f in (storage.root / s.dir).glob("observation.*"))
    return (f"{col.encoding}: {stored / 2**20:.2f} MiB on disk vs {raw / 2**20:.1f} MiB raw "
            f"({raw / max(stored, 1):.0f}x smaller)")


def save_preview(batch, path: Path, windows: int = 4, every: int = 2) -> Path:
    """Writes a grid: one row per window, every ``every``-th frame; the event frame framed in red.

    Positions outside the episode (``mask`` False) are dimmed.
    """
    from PIL import Image, ImageDraw

    obs = batch["observation"].numpy()  # [W, L, 84, 84]
    steps, ev_steps, mask = batch["step"].numpy(), batch["event", "step"].numpy(), batch["mask"].numpy()
    n, length, h, w = obs.shape[0], obs.shape[1], obs.shape[2], obs.shape[3]
    n = min(n, windows)
    pad = 4
    cols = list(range(0, length, every))
    grid = Image.new("RGB", (len(cols) * (w + pad) + pad, n * (h + pad) + pad), (40, 40, 40))
    draw = ImageDraw.Draw(grid)
    for r in range(n):
        event_pos = int(np.flatnonzero((steps[r] == ev_steps[r]) & mask[r])[0])
        shown = sorted(set(cols) - {event_pos - event_pos % every} | {event_pos})
        for c, pos in enumerate(shown[:len(cols)]):
            frame = obs[r, pos] if mask[r, pos] else obs[r, pos] // 3
            x, y = pad + c * (w + pad), pad + r * (h + pad)
            grid.paste(Image.fromarray(frame).convert("RGB"), (x, y))
            if pos == event_pos:
                draw.rectangle([x - 2, y - 2, x + w + 1, y + h + 1], outline=(255, 40, 40), width=2)
    grid.save(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="demo_data")
    parser.add_argument("--env", default="ALE/Pong-v5")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=600, help="steps per episode (keeps the demo short)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--encoding", default="zstd", help="encoding of the observation frames")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    root = user_path(args.root, "--root") / "pong"
    if root.exists():
        shutil.rmtree(root)

    t0 = time.perf_counter()
    stats = generate(functools.partial(make_atari_env, args.env), None, root, num_episodes=args.episodes,
                     num_workers=args.workers, max_steps=args.max_steps, seed=args.seed,
                     encodings={"observation": args.encoding})
    t_gen = time.perf_counter() - t0
    index = EventIndex.load(root)  # saved by generate()
    storage = ShardedStorage(root)
    sampler = EventSliceSampler(root, event_regex="reward:.*", win_len=WIN_LEN, bias=BIAS, seed=args.seed)
    num_windows = len(sampler.windows)
    torch.manual_seed(args.seed)
    rb = TensorDictReplayBuffer(storage=storage, sampler=sampler, batch_size=8 * WIN_LEN)
    batch = rb.sample().reshape(8, WIN_LEN)

    rows = [
        ("env", args.env),
        ("episodes", f"{storage.num_episodes} ({args.workers} workers, max {args.max_steps} steps each)"),
        ("rows", f"{len(storage)}"),
        ("generation", f"{t_gen:.1f} s, {stats.steps_per_second:.0f} steps/s"),
        ("bytes on disk", f"{_du(root)} ({_du(root) / 2**20:.1f} MiB), {storage.num_shards} shard(s)"),
        ("frames", _saving(storage)),
    ]
    rows += [(f"events {name}", str(count)) for name, count in sorted(index.counts().items())]
    rows += [("windows reward:.*", f"{num_windows} (win_len={WIN_LEN}, bias={BIAS})")]
    width = max(len(k) for k, _ in rows)
    print("\n" + "\n".join(f"{k:<{width}}  {v}" for k, v in rows))

    names = sampler.names
    print(f"\nsampled batch {tuple(batch.batch_size)}: observation {tuple(batch['observation'].shape)} "
          f"{batch['observation'].dtype}, mask {int(batch['mask'].sum())}/{batch['mask'].numel()} valid")
    for i in range(4):
        w = batch[i]
        event_pos = int(np.flatnonzero((w["step"] == w["event", "step"]).numpy() & w["mask"].numpy())[0])
        print(f"  window {i}: episode {int(w['episode'][0]):2d} steps {int(w['step'][0]):3d}..{int(w['step'][-1]):3d}"
              f"  event {names[int(w['event', 'name_id'][0])]} at step {int(w['event', 'step'][0])} "
              f"(position {event_pos}), reward there {float(w['next', 'reward'][event_pos]):+.0f}")
    path = save_preview(batch, user_path(args.root, "--root") / "preview.png")
    print(f"\npreview: {path.resolve()}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
