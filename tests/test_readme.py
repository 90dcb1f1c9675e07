"""Every ``python`` block of the README runs, twice in a row, from a fresh directory.

Blocks run in README order as scripts in one temporary working directory (a
later block may read what an earlier one wrote), each twice as ``__main__``
with a fresh namespace. They run in one interpreter started for them (torch
and the package imported once; its environment and working directory set
again for each block), never in the test process itself. Blocks that
download from the Atari DQN bucket run against the GCS emulator holding
generated replay logs under the bucket's real names.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from gcs_server import upload_tree
from interop.atari_dqn.replay_logs_maker import make_replay_logs

# blocks share one working directory and one interpreter: all of them on one xdist worker
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("readme")]

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
NETWORK = ("download_atari_run", "list_atari_checkpoints", "AtariDQNExperienceReplay(", "gs://test-bucket")
BLOCK_TIMEOUT = 200  # seconds for both runs of one block (pytest's own limit is 240)
# Reads one request per line from stdin: {"script", "cwd", "env"}; runs the script twice as __main__, then
# answers on the file descriptor argv[1]: {"runs": completed runs, "error": traceback or null}.
RUNNER = """import json, os, runpy, sys, traceback
import torch, torchrl.data, torchrl_ext  # once, for every block
answers = os.fdopen(int(sys.argv[1]), "w")
base = dict(os.environ)
for line in sys.stdin:
    request = json.loads(line)
    os.environ.clear()
    os.environ.update(base, **request["env"])
    os.chdir(request["cwd"])
    runs, error = 0, None
    try:
        for _ in range(2):
            runpy.run_path(request["script"], run_name="__main__")
            runs += 1
    except BaseException:
        error = traceback.format_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    answers.write(json.dumps({"runs": runs, "error": error}) + "\\n")
    answers.flush()
"""


class BlockRunner:
    """The interpreter that runs the README blocks in ``workdir``; started again if a block ends it."""

    def __init__(self, workdir: Path, log: Path) -> None:
        self.workdir, self.log = workdir, log
        self.proc: subprocess.Popen | None = None

    def _start(self) -> None:
        read, write = os.pipe()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TQDM_DISABLE": "1"}
        env.pop("STORAGE_EMULATOR_HOST", None)  # only the blocks that download get the emulator
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(write)], stdin=subprocess.PIPE,
                                         stdout=out, stderr=subprocess.STDOUT, pass_fds=(write,), env=env,
                                         cwd=self.workdir)  # where multiprocessing finds a block's main script
        os.close(write)
        self.answers = os.fdopen(read)

    def run(self, script: Path, env: dict[str, str]) -> tuple[int, str | None]:
        """Runs ``script`` twice in its directory; returns ``(completed runs, error)``."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        start = self.log.stat().st_size
        self.proc.stdin.write(json.dumps({"script": script.name, "cwd": str(script.parent), "env": env}).encode()
                              + b"\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.answers], [], [], BLOCK_TIMEOUT)
        line = self.answers.readline() if ready else ""
        if line:
            answer = json.loads(line)
            return answer["runs"], answer["error"]
        self.close()
        output = self.log.read_bytes()[start:].decode(errors="replace")[-3000:]
        return 0, f"no answer within {BLOCK_TIMEOUT} s or the interpreter ended:\n{output}"

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc.stdin.close()
            self.answers.close()
            self.proc = None


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("readme")


@pytest.fixture(scope="module")
def runner(workdir, tmp_path_factory) -> Iterator[BlockRunner]:
    runner = BlockRunner(workdir, tmp_path_factory.mktemp("readme_log") / "output.txt")
    yield runner
    runner.close()


@pytest.fixture
def atari_bucket(gcs_server, tmp_path):
    """The public bucket's layout (``atari-replay-datasets/dqn/Pong/1/replay_logs``) in the emulator."""
    make_replay_logs(tmp_path / "Pong" / "1", capacity=300, num_episodes=6, mean_len=150, seed=1)
    bucket = "atari-replay-datasets"
    if gcs_server.client.lookup_bucket(bucket) is None:
        gcs_server.client.create_bucket(bucket)
    upload_tree(gcs_server.client, bucket, "dqn/Pong/1/replay_logs/", tmp_path / "Pong" / "1" / "replay_logs")
    return gcs_server.endpoint


def test_the_readme_has_blocks():
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_block_runs_twice(number, workdir, runner, request):
    block = BLOCKS[number]
    env = {}
    if any(name in block for name in NETWORK):
        env["STORAGE_EMULATOR_HOST"] = request.getfixturevalue("atari_bucket")
    script = workdir / f"block_{number}.py"
    script.write_text(block, encoding="utf-8")
    runs, error = runner.run(script, env)
    assert error is None and runs == 2, f"README block {number} failed on run {runs + 1}:\n{block}\n{error}"
