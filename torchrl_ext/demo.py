"""``make demo``: write a synthetic dataset, open it, sample it through TorchRL.

Run as ``python -m torchrl_ext.demo --root DIR``.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch
from torchrl.data import TensorDictReplayBuffer
from torchrl.data.replay_buffers import RandomSampler, SliceSampler

from .cli.info import format_info
from .storages import ShardedStorage
from .synthetic import write_synthetic


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="demo_data")
    parser.add_argument("--episodes", type=int, default=300)
    args = parser.parse_args(argv)
    root = Path(args.root) / "synthetic"
    if root.exists():
        shutil.rmtree(root)
    t0 = time.perf_counter()
    write_synthetic(root, episodes=args.episodes, length=(20, 120), shard_rows=2048)
    print(f"wrote {args.episodes} synthetic episodes in {time.perf_counter() - t0:.1f}s\n")
    storage = ShardedStorage(root)
    print(format_info(storage), "\n")
    torch.manual_seed(0)
    rb = TensorDictReplayBuffer(storage=storage, sampler=RandomSampler(), batch_size=128)
    batch = rb.sample()
    print("random batch of 128 transitions:")
    print(f"  observation {tuple(batch['observation'].shape)} {batch['observation'].dtype}, "
          f"next observation {tuple(batch['next', 'observation'].shape)}")
    print(f"  episodes {batch['episode'][:8].tolist()} ... steps {batch['step'][:8].tolist()} ...")
    rb = TensorDictReplayBuffer(storage=storage, sampler=SliceSampler(slice_len=16, traj_key="episode",
                                                                       cache_values=True), batch_size=64)
    slices = rb.sample().reshape(4, 16)
    print("4 slices of 16 steps (each inside one episode):")
    for s in slices:
        print(f"  episode {int(s['episode'][0]):4d}  steps {int(s['step'][0]):3d}..{int(s['step'][-1]):3d}  "
              f"return {float(s['next', 'reward'].sum()):8.3f}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
