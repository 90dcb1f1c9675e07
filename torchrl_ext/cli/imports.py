"""``torchrl-ext import SOURCE DIR --root ROOT``: convert a dataset kept in another project's layout.

``SOURCES`` maps each source name to the module of its subcommand (relative to
this package) and its one-line help. A source module defines
``add_parser(kinds, name, help)``, which registers ``import <name>`` with
``func`` set to a callable ``(args) -> int``; like every command module it
imports torch, numpy and the source's own dependencies inside that callable
only, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib

__all__ = ["SOURCES", "add_parser"]

# source name -> (module relative to this package, one-line help)
SOURCES: dict[str, tuple[str, str]] = {
    "crowdplay": (".import_crowdplay", "a CrowdPlay dataset: dataset.sqlite plus one trajectory file per episode"),
    "lerobot": (".import_lerobot", "a LeRobot v3.0 dataset directory: parquet tables plus mp4 videos"),
    "minestudio": (".import_minestudio", "MineStudio 1.1.6 datasets: LMDB parts with mp4 image chunks"),
    "minari": (".import_minari", "a local Minari 0.5 dataset (HDF5, Arrow or Parquet backend), by id or directory"),
    "torchrl": (".import_torchrl", "a TorchRL replay buffer saved with rb.dumps(DIR), or a memmap TensorDict"),
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        description="Convert a dataset kept in another project's layout into a sharded dataset at ROOT. "
                    "An interrupted import resumes when run again with the same arguments.",
    )
    kinds = p.add_subparsers(dest="kind", required=True, metavar="SOURCE", title="sources")
    for name, (module, help_) in SOURCES.items():
        importlib.import_module(module, __package__).add_parser(kinds, name, help_)
