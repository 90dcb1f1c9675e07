"""The ``torchrl-ext`` command line: a thin layer over the public functions.

Each subcommand lives in its own module with ``add_parser(subparsers)``, which
registers the parser and sets ``func`` to a callable ``(args) -> int``.
Modules are listed in ``COMMANDS`` and imported on use.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

__all__ = ["main", "COMMANDS"]

# subcommand name -> module (relative to this package)
COMMANDS: dict[str, str] = {
    "info": ".info",
    "download": ".download",
    "events": ".events",
    "generate": ".generate",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="torchrl-ext", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        importlib.import_module(module, __name__).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, KeyError, FileNotFoundError, FileExistsError, RuntimeError) as err:
        print(f"torchrl-ext {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
