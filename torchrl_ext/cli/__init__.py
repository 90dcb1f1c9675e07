"""The ``torchrl-ext`` command line: a thin layer over the public functions.

Each subcommand lives in its own module with ``add_parser(subparsers)``, which
registers the parser and sets ``func`` to a callable ``(args) -> int``.
``COMMANDS`` maps each name to its module and one-line help; only the module
of the command being run is imported, and each module imports torch, TorchRL
or the cloud client inside its ``run`` only, so ``--help`` answers at once.

Exit status: 0 success; 1 the data or the remote source failed (a corrupt
dataset, an unreachable bucket, a stalled download, a checksum mismatch, a
crashed worker); 2 a usage error (bad arguments, a missing file or directory,
a missing optional package).

Errors and log lines are printed in the command line's terms: the library
names an argument the Python way, in backticks (`` `local_dir=` ``,
`` `deadline` ``), and :func:`cli_text` names it by the flag the command's
parser declares for it (`` `--local-dir` ``, `` `--deadline` ``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
import textwrap
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["COMMANDS", "HelpFormatter", "build_parser", "cli_text", "exit_code", "main", "version"]

PROG = "torchrl-ext"
DESCRIPTION = (
    "Sharded memory-mapped datasets for TorchRL replay buffers: summarise, verify, "
    "download, generate and preprocess datasets, and count events."
)
EPILOG = (
    "exit status: 0 success; 1 the data or the remote source failed (corrupt dataset, "
    "unreachable bucket, stalled download, checksum mismatch); 2 usage error (bad "
    "arguments, missing file, missing optional package). "
    f"Run '{PROG} COMMAND --help' for the options of a command."
)

# subcommand name -> (module relative to this package, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": (".info", "summarise a dataset: shards, rows, episodes, bytes, schema"),
    "verify": (".verify", "check every shard of a dataset against its checksum"),
    "push": (".push", "upload a dataset to a bucket (gs://bucket/prefix), its manifest last"),
    "download": (".download", "download and convert a dataset"),
    "events": (".events", "build the event index; count events and their windows"),
    "generate": (".generate", "generate Atari episodes (random policy) into a dataset"),
    "preprocess": (".preprocess", "write a preprocessed copy: resize, grayscale, stack, float"),
    "import": (".imports", "convert a dataset kept in another project's layout (crowdplay, ...)"),
}


class HelpFormatter(argparse.HelpFormatter):
    """Wraps each line of a description on its own (line breaks stay) and shows every option's default.

    ``(default: ...)`` is appended to an option's help unless the help already
    names its default, the default is ``None`` (the help says what happens when
    the option is left out) or the option is a flag taking no value; a required
    option says ``(required)``.
    """

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n".join(textwrap.fill(line, width, initial_indent=indent, subsequent_indent=indent,
                                       break_on_hyphens=False) if line.strip() else ""
                         for line in text.splitlines())

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or "(default" in text or "(required)" in text:
            return text
        if action.required:
            return f"{text} (required)".strip()
        if action.nargs != 0 and action.default not in (None, argparse.SUPPRESS):
            return f"{text} (default: %(default)s)".strip()
        return text


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` using :class:`HelpFormatter`; subparsers inherit the class.

    An option declared without help still gets a help line, so its default shows.
    Each option's flag is kept by its destination (``flags["local_dir"] ==
    "--local-dir"``); parsing leaves the flags of every parser the command
    line went through in ``cli_flags`` of the namespace.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        self.flags: dict[str, str] = {}
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        if not action.help and action.option_strings and action.nargs != 0:
            action.help = "(default: %(default)s)"
        if action.option_strings and action.dest != argparse.SUPPRESS:
            self.flags[action.dest] = next((o for o in action.option_strings if o.startswith("--")),
                                           action.option_strings[0])
        return action

    def parse_known_args(self, args: Sequence[str] | None = None,
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        namespace, extras = super().parse_known_args(args, namespace)
        namespace.cli_flags = {**self.flags, **getattr(namespace, "cli_flags", {})}  # a subcommand's win
        return namespace, extras


_ARGUMENT = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)=?`")


def cli_text(text: str, flags: Mapping[str, str]) -> str:
    """``text`` with each argument named the Python way named by its flag, where the command has one.

    Args:
        text: a message naming arguments in backticks: `` `local_dir=` `` or `` `deadline` ``.
        flags: option destination -> flag, e.g. ``{"local_dir": "--local-dir"}``.

    Returns:
        The message for the command line; names without a flag stay as they are.

    Example:
        >>> cli_text("pass `local_dir=` or `bucket=`/`threads=`", {"local_dir": "--local-dir", "bucket": "--bucket"})
        'pass `--local-dir` or `--bucket`/`threads=`'
    """
    return _ARGUMENT.sub(lambda m: f"`{flags[m[1]]}`" if m[1] in flags else m[0], text)


class _CliFormatter(logging.Formatter):
    """Log lines in the command line's terms (:func:`cli_text`)."""

    def __init__(self, fmt: str, flags: Mapping[str, str]) -> None:
        super().__init__(fmt)
        self.flags = flags

    def format(self, record: logging.LogRecord) -> str:
        return cli_text(super().format(record), self.flags)


def version() -> str:
    """The installed distribution's version, else the package's ``__version__``."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("torchrl-ext")
    except PackageNotFoundError:
        from .. import __version__

        return __version__


class _VersionAction(argparse.Action):
    """``--version``: looks the version up only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: Any = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(f"{PROG} {version()}")
        parser.exit()


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word that is not an option), if known."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``torchrl-ext`` parser, with the full options of ``command`` only.

    Args:
        command: the subcommand whose module is imported to add its options;
            the others are listed with their one-line help only.

    Returns:
        The parser.
    """
    parser = _Parser(prog=PROG, description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log at INFO level and print tracebacks of errors")
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                title="commands")
    for name, (module, help_) in COMMANDS.items():
        if name == command:
            importlib.import_module(module, __name__).add_parser(sub)
        else:
            sub.add_parser(name, help=help_)
    return parser


def exit_code(err: BaseException) -> int | None:
    """The exit status for an error a command raised, or None for a bug (re-raised).

    Args:
        err: the exception.

    Returns:
        1 for corrupt data or a failed remote source, 2 for a usage error, None otherwise.
    """
    from ..format import FormatError
    from ..remote.gcs_errors import (
        ChecksumMismatchError,
        DownloadStalledError,
        RemoteSourceError,
    )

    if isinstance(err, (FormatError, RemoteSourceError, DownloadStalledError, ChecksumMismatchError,
                        RuntimeError)):
        return 1
    if isinstance(err, (ValueError, FileNotFoundError, FileExistsError, ImportError)):
        return 2
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``torchrl-ext`` with ``argv`` (default: the process arguments); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command_in(argv)).parse_args(argv)
    # logs go to this call's stderr, and only during it: main can run many times in one process
    handler = logging.StreamHandler()
    handler.setFormatter(_CliFormatter("%(levelname)s %(name)s: %(message)s", args.cli_flags))
    root, level = logging.getLogger(), logging.getLogger().level
    root.addHandler(handler)
    root.setLevel(logging.INFO if args.verbose else logging.WARNING)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        return code
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of stdout left (`torchrl-ext info X | head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush fails no more
        return 141  # what a shell reports for SIGPIPE
    except Exception as err:  # noqa: BLE001 - classified by exit_code, the rest re-raised
        code = exit_code(err)
        if code is None:
            raise
        if args.verbose:
            traceback.print_exc()
        message = cli_text(" ".join(str(err).split()) or type(err).__name__, args.cli_flags)
        print(f"{PROG} {args.command}: error: {message}", file=sys.stderr)
        return code
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
