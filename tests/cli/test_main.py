"""``torchrl-ext`` itself: help, version, ``python -m``, defaults in every help, exit codes.

The entry points (the installed script, ``python -m``) and the lazy imports
are checked in fresh interpreters; everything else calls ``main`` in this
process (``run_cli``).
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from helpers import run_cli

from torchrl_ext.cli import COMMANDS, exit_code

SCRIPT = Path(sysconfig.get_path("scripts")) / "torchrl-ext"
SUBCOMMANDS = [*COMMANDS, "download atari-dqn"]


def run(*args: str, entry: str = "script") -> subprocess.CompletedProcess:
    cmd = {"script": [str(SCRIPT)], "module": [sys.executable, "-m", "torchrl_ext"],
           "cli-module": [sys.executable, "-m", "torchrl_ext.cli"]}[entry]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})


@pytest.fixture
def cli(capsys, monkeypatch):
    """``torchrl-ext ARGS`` in this process, help wrapped at the 200 columns ``run`` gives."""
    monkeypatch.setenv("COLUMNS", "200")
    return lambda *args: run_cli(capsys, *args)


def test_help_lists_every_command_with_its_help(cli):
    proc = cli("--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: torchrl-ext [-h] [-v] [--version] COMMAND ...")
    for name, (_, text) in COMMANDS.items():
        assert re.search(rf"^\s+{name}\s+{re.escape(text)}$", proc.stdout, re.M), name
    assert "exit status: 0 success; 1 " in proc.stdout
    assert "``" not in proc.stdout and proc.stderr == ""


@pytest.mark.parametrize("entry", ["script", "module", "cli-module"])
def test_version(entry):
    proc = run("--version", entry=entry)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"torchrl-ext {importlib.metadata.version('torchrl-ext')}\n"


def test_python_m_torchrl_ext_is_the_cli():
    assert run("--help", entry="module").stdout == run("--help").stdout


def test_no_command_is_a_usage_error(cli):
    proc = cli()
    assert proc.returncode == 2
    assert "error: the following arguments are required: COMMAND" in proc.stderr


def test_unknown_command_is_a_usage_error(cli):
    proc = cli("nope")
    assert proc.returncode == 2
    assert "invalid choice: 'nope'" in proc.stderr


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_help_shows_every_default(cli, command):
    proc = cli(*command.split(), "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: torchrl-ext {command} ")
    assert "``" not in proc.stdout
    options = proc.stdout.split("\noptions:\n", 1)[1]
    blocks = re.findall(r"^  (-.*?)(?=^  -|^\S|\Z)", options, re.M | re.S)
    assert blocks[0].startswith("-h, --help")
    for block in blocks:
        spec = block.split("  ")[0].strip()
        takes_value = " " in spec.split(", ")[-1]  # "--workers WORKERS", not "--force"
        if takes_value:
            assert "(default" in block or "(required)" in block, block


@pytest.mark.parametrize(("command", "shown"), [
    ("generate", ["--workers WORKERS     parallel worker processes (or Ray actors) (default: 2)",
                  "(default: 27000)"]),
    ("events", ["--win-len WIN_LEN", "--bias BIAS"]),
    ("preprocess", ["(default: observation)", "(default: number of CPUs)"]),
])
def test_named_defaults_are_shown(cli, command, shown):
    out = cli(command, "--help").stdout
    for text in shown:
        assert text in out, text


def test_generate_executors_match_the_library():
    from torchrl_ext.cli.generate import EXECUTORS
    from torchrl_ext.generate import EXECUTORS as LIBRARY

    assert EXECUTORS == LIBRARY


def test_download_help_names_the_library_defaults(cli):
    from torchrl_ext.interop.atari_dqn import ATARI_BUCKET, ATARI_PREFIX

    out = cli("download", "atari-dqn", "--help").stdout
    assert f"(default: {ATARI_BUCKET})" in out and f"(default: {ATARI_PREFIX})" in out


def test_help_imports_neither_torch_nor_the_cloud_client():
    code = ("import sys\nfrom torchrl_ext.cli import main\n"
            "for argv in (['--help'], ['info', '--help'], ['verify', '--help'], ['events', '--help'],"
            " ['generate', '--help'], ['preprocess', '--help'], ['download', 'atari-dqn', '--help'],"
            " ['download', 'dataset', '--help'], ['push', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in"
            " ('torch', 'torchrl', 'tensordict', 'numpy', 'ray', 'google'))\n"
            "print('HEAVY', heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "HEAVY []"


@pytest.mark.parametrize(("err", "code"), [
    ("FormatError", 1), ("RemoteSourceError", 1), ("SourceUnreachableError", 1),
    ("DownloadStalledError", 1), ("ChecksumMismatchError", 1), ("RuntimeError", 1),
    ("ValueError", 2), ("FileNotFoundError", 2), ("FileExistsError", 2), ("ImportError", 2),
    ("TypeError", None), ("KeyError", None),
])
def test_exit_codes(err, code):
    import builtins

    import torchrl_ext.format
    import torchrl_ext.remote.gcs_errors

    cls = (getattr(builtins, err, None) or getattr(torchrl_ext.remote.gcs_errors, err, None)
           or getattr(torchrl_ext.format, err))
    assert exit_code(cls("x")) == code


def test_a_bug_is_not_hidden(tmp_path, monkeypatch):
    import torchrl_ext.cli.info
    from torchrl_ext.cli import main

    def boom(args):
        raise KeyError("bug")

    monkeypatch.setattr(torchrl_ext.cli.info, "run", boom)
    with pytest.raises(KeyError, match="bug"):
        main(["info", str(tmp_path)])


def test_a_library_error_is_one_line_on_stderr(cli, tmp_path):
    proc = cli("info", str(tmp_path / "nope"))
    assert proc.returncode == 2
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith("torchrl-ext info: error: ") and "no dataset manifest found" in line


@pytest.mark.parametrize(("flags", "logged"), [
    ([], "WARNING torchrl_ext.cli.info: 1 shard skipped\n"),
    (["-v"], "INFO torchrl_ext.cli.info: reading\nWARNING torchrl_ext.cli.info: 1 shard skipped\n"),
])
def test_logs_reach_stderr_once_per_call_and_logging_is_left_as_found(cli, tmp_path, monkeypatch, flags, logged):
    import logging

    import torchrl_ext.cli.info

    def logs(args):
        log = logging.getLogger("torchrl_ext.cli.info")
        log.info("reading")
        log.warning("%d shard skipped", 1)
        return 0

    monkeypatch.setattr(torchrl_ext.cli.info, "run", logs)
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    for _ in range(2):
        proc = cli(*flags, "info", str(tmp_path))
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", logged)
    assert (list(root.handlers), root.level) == before
