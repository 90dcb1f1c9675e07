"""``torchrl-ext download``: a server that cannot be reached ends the command at once, on one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from torchrl_ext.cli.download import parse_checkpoints


@pytest.mark.slow  # loads torch in a subprocess
def test_unreachable_bucket_is_one_line_and_exit_1(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}"}
    proc = subprocess.run([sys.executable, "-m", "torchrl_ext", "download", "atari-dqn", "Pong/1",
                           "--root", str(tmp_path)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"torchrl-ext download: error: cannot reach http://127.0.0.1:{port} "
                           "(connection failed: Connection refused) to list gs://atari-replay-datasets/")
    assert "STORAGE_EMULATOR_HOST" in line and "`local_dir=`" in line


def test_parse_checkpoints():
    assert parse_checkpoints("0-2,7,,9-9") == [0, 1, 2, 7, 9]
    assert parse_checkpoints(None) is None
