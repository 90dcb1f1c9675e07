"""Every ``python`` block of the README runs, twice in a row, from a fresh directory.

Blocks run in README order as scripts in one temporary working directory (a
later block may read what an earlier one wrote), each twice as ``__main__``
in one fresh interpreter (the second run finds what the first one wrote). Blocks that
download from the Atari DQN bucket run against the GCS emulator holding
generated replay logs under the bucket's real names.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from gcs_server import upload_tree
from interop.atari_dqn.replay_logs_maker import make_replay_logs

pytestmark = pytest.mark.slow  # every block is a fresh Python process

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
NETWORK = ("download_atari_run", "list_atari_checkpoints", "AtariDQNExperienceReplay(")
DONE = "<readme block run done>"
TWICE = f"""import runpy, sys
for _ in range(2):
    runpy.run_path(sys.argv[1], run_name="__main__")
    print({DONE!r}, flush=True)
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("readme")


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
def test_block_runs_twice(number, workdir, request):
    block = BLOCKS[number]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TQDM_DISABLE": "1"}
    if any(name in block for name in NETWORK):
        env["STORAGE_EMULATOR_HOST"] = request.getfixturevalue("atari_bucket")
    script = workdir / f"block_{number}.py"
    script.write_text(block, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", TWICE, script.name], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=300)
    runs = proc.stdout.count(DONE)
    assert proc.returncode == 0 and runs == 2, (
        f"README block {number} failed on run {runs + 1}:\n{block}\n{proc.stderr[-3000:]}")
