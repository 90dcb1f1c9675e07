"""``torchrl-ext download``: a server that cannot be reached ends the command at once, on one line.

The command prints the library's own message with each Python argument
(`` `bucket=` ``) named by the command's flag (`` `--bucket` ``).
"""

from __future__ import annotations

import socket

import pytest

from torchrl_ext.cli import build_parser, cli_text, main
from torchrl_ext.cli.download import parse_checkpoints
from torchrl_ext.interop.atari_dqn import prepare_atari_dqn
from torchrl_ext.remote.gcs_errors import SourceUnreachableError

LISTING = "gs://atari-replay-datasets/dqn/Pong/1/replay_logs/"


@pytest.fixture
def closed_port(monkeypatch) -> int:
    """``STORAGE_EMULATOR_HOST`` on a loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    return port


def test_unreachable_bucket_is_one_line_naming_flags_and_exit_1(closed_port, tmp_path, capsys):
    code = main(["download", "atari-dqn", "Pong/1", "--root", str(tmp_path)])
    (line,) = capsys.readouterr().err.splitlines()
    assert code == 1
    assert line == (
        f"torchrl-ext download: error: cannot reach http://127.0.0.1:{closed_port} (connection failed: "
        f"Connection refused) to list {LISTING}; point at a reachable mirror with `--bucket` or "
        "STORAGE_EMULATOR_HOST=http://host:port, or convert files already on disk with `--local-dir`"
    )


def test_python_names_arguments_where_the_command_names_flags(closed_port, tmp_path, capsys):
    with pytest.raises(SourceUnreachableError, match=r"`bucket=` .*`local_dir=`$") as info:
        prepare_atari_dqn("Pong/1", tmp_path)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert "--bucket" not in str(info.value) and "--local-dir" not in str(info.value)
    assert main(["download", "atari-dqn", "Pong/1", "--root", str(tmp_path)]) == 1
    expected = str(info.value).replace("`bucket=`", "`--bucket`").replace("`local_dir=`", "`--local-dir`")
    assert capsys.readouterr().err == f"torchrl-ext download: error: {expected}\n"


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_server_that_never_answers_ends_within_the_deadline_naming_flags(fault_server, tmp_path, capsys):
    fs = fault_server({}, silent=True)
    code = main(["download", "atari-dqn", "Pong/1", "--root", str(tmp_path), "--deadline", "1.5"])
    (line,) = capsys.readouterr().err.splitlines()
    assert code == 1
    assert line == (
        f"torchrl-ext download: error: cannot reach {fs.endpoint} (the server accepted the connection but did "
        f"not answer within 1.5 s) to list {LISTING}; point at a reachable mirror with `--bucket` or "
        "STORAGE_EMULATOR_HOST=http://host:port, or convert files already on disk with `--local-dir`"
    )
    assert fs.listing_requests == 1


def test_bad_deadline_names_the_flag_and_exits_2(closed_port, tmp_path, capsys):
    assert main(["download", "atari-dqn", "Pong/1", "--root", str(tmp_path), "--deadline", "0"]) == 2
    assert capsys.readouterr().err == (
        "torchrl-ext download: error: `--deadline` must be a positive number of seconds, got 0.0\n"
    )


def test_the_parser_maps_each_option_to_its_long_flag():
    args = build_parser("download").parse_args(["download", "atari-dqn", "Pong/1", "--root", "r"])
    assert {k: args.cli_flags[k] for k in ("bucket", "local_dir", "num_procs", "deadline", "verbose")} == {
        "bucket": "--bucket", "local_dir": "--local-dir", "num_procs": "--num-procs", "deadline": "--deadline",
        "verbose": "--verbose"}
    assert "dataset_id" not in args.cli_flags  # a positional has no flag to name


@pytest.mark.parametrize(("text", "expected"), [
    ("pass `local_dir=`", "pass `--local-dir`"),
    ("`deadline` must be positive", "`--deadline` must be positive"),
    ("`bucket=`/`prefix=`", "`--bucket`/`--prefix`"),
    ("`threads=` has no flag", "`threads=` has no flag"),
    ("`--bucket` and bucket= stay", "`--bucket` and bucket= stay"),
])
def test_cli_text_maps_only_arguments_the_command_has(text, expected):
    flags = {"local_dir": "--local-dir", "deadline": "--deadline", "bucket": "--bucket", "prefix": "--prefix"}
    assert cli_text(text, flags) == expected


def test_parse_checkpoints():
    assert parse_checkpoints("0-2,7,,9-9") == [0, 1, 2, 7, 9]
    assert parse_checkpoints(None) is None
