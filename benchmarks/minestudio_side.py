"""MineStudio 1.1.6's own tools and loader, run in a separate virtualenv that has ``minestudio`` installed.

Used by ``bench_minestudio.py`` (it never imports torchrl_ext):

``build SOURCE OUT``
    converts contractor-style source files in SOURCE (``videos/<eps>-<t>.mp4``
    640x360, ``actions/<eps>-<t>.pkl``, ``infos/<eps>-<t>.pkl``) into a
    MineStudio dataset at OUT with ``ConvertManager`` and the
    ``Image``/``Action``/``MetaInfoConvertCallback`` (one Ray worker each), then
    ``tools/event_convertion.py``'s ``main``. Prints a JSON line of seconds.
    (``ActionConvertCallback.__init__`` cannot run in 1.1.6 — it calls
    ``super().__init__(**kwargs)`` without ``input_dirs``/``chunk_size`` — so
    its attributes are set directly; its own methods do the conversion.)
``dump OUT SIZE FILE``
    every 7th item (image and action callbacks, SIZE x SIZE, ``win_len=128``)
    as numpy arrays in FILE (``.npz``: ``<i>/image``, ``<i>/mask``,
    ``<i>/timestamp``, ``<i>/text``, ``<i>/env_action/<key>``).
``loader OUT SIZE BATCHES``
    windows/s of ``DataLoader(EventDataset(...), batch_size=8, num_workers=2,
    shuffle=True, collate_fn=batchify)`` with image (SIZE x SIZE) and action
    callbacks, ``win_len=128``; prints a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

from loader_timing import time_batches

warnings.filterwarnings("ignore")


def build(source: str, out: str) -> None:
    import ray
    from minestudio.data.minecraft.callbacks import (
        ActionConvertCallback,
        ImageConvertCallback,
        MetaInfoConvertCallback,
    )
    from minestudio.data.minecraft.tools import event_convertion
    from minestudio.data.minecraft.tools.convertion import ConvertManager

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    t0 = time.perf_counter()
    for name, cls, sub in (("image", ImageConvertCallback, "videos"), ("action", ActionConvertCallback, "actions"),
                           ("meta_info", MetaInfoConvertCallback, "infos")):
        dirs = [os.path.join(source, sub)]
        if cls is ActionConvertCallback:  # its __init__ calls super().__init__(**kwargs) without the arguments
            kernel = object.__new__(cls)
            kernel.input_dirs, kernel.chunk_size, kernel.action_transformer_kwargs = dirs, 32, {}
        else:
            kernel = cls(input_dirs=dirs, chunk_size=32)
        manager = ConvertManager(output_dir=os.path.join(out, name), convert_kernel=kernel, chunk_size=32,
                                 num_workers=1)
        manager.prepare_tasks()
        manager.dispatch()
    t1 = time.perf_counter()
    event_convertion.main(argparse.Namespace(input_dir=out))
    ray.shutdown()
    print(json.dumps({"convert_s": t1 - t0, "events_s": time.perf_counter() - t1}))


def _dataset(out: str, size: int):
    from minestudio.data.minecraft.callbacks import (
        ActionKernelCallback,
        ImageKernelCallback,
    )
    from minestudio.data.minecraft.dataset_event import EventDataset

    return EventDataset(dataset_dirs=[out], modal_kernel_callbacks=[
        ImageKernelCallback(frame_width=size, frame_height=size, enable_video_aug=False), ActionKernelCallback()],
        win_len=128, split="train", split_ratio=1.0, event_regex=".*", verbose=False)


def dump(out: str, size: int, path: str) -> None:
    import numpy as np

    ds = _dataset(out, size)
    arrays = {}
    for i in range(0, len(ds), 7):
        item = ds[i]
        arrays[f"{i}/image"] = item["image"].numpy()
        arrays[f"{i}/mask"] = item["mask"].numpy()
        arrays[f"{i}/timestamp"] = item["timestamp"].numpy()
        arrays[f"{i}/text"] = np.array(item["text"])
        arrays.update({f"{i}/env_action/{k}": v.numpy() for k, v in item["env_action"].items()})
    np.savez(path, **arrays)
    print(json.dumps({"items": len(range(0, len(ds), 7))}))


def loader(out: str, size: int, batches: int) -> None:
    import torch
    from minestudio.data.minecraft.utils import batchify
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    ds = _dataset(out, size)
    dl = DataLoader(ds, batch_size=8, num_workers=2, shuffle=True, collate_fn=batchify, drop_last=True,
                    persistent_workers=False)
    print(json.dumps(time_batches(dl, batches)))


if __name__ == "__main__":
    cmd, *rest = sys.argv[1:]
    if cmd == "build":
        build(*rest)
    elif cmd == "loader":
        loader(rest[0], int(rest[1]), int(rest[2]))
    elif cmd == "dump":
        dump(rest[0], int(rest[1]), rest[2])
    else:
        raise SystemExit(f"unknown command {cmd!r}; expected build, dump or loader")
