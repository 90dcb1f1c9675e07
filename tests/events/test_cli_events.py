"""``torchrl-ext events``: exit code and output checked (``main`` run in this process)."""

from __future__ import annotations

import re
import subprocess

import pytest
from helpers import run_cli, tree_snapshot

from torchrl_ext.events import EventIndex
from torchrl_ext.synthetic import write_synthetic


@pytest.fixture
def cli(capsys):
    def events(*args: str) -> subprocess.CompletedProcess:
        return run_cli(capsys, "events", *args)
    return events


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    # 6 episodes of 30 steps; tick:<step % 3> at steps 0, 7, 14, 21, 28
    root = write_synthetic(tmp_path_factory.mktemp("ds") / "ds", episodes=6, length=30, obs_shape=(2,),
                           shard_rows=40, events_every=7)
    EventIndex.build(root)
    return root


def test_prints_counts(cli, root):
    out = cli(str(root), "--regex", "tick", "--win-len", "4", "--min-nearby", "7")
    lines = out.stdout.splitlines()
    assert out.returncode == 0
    assert lines[1].split() == ["tick:0", "12", "12"]
    assert lines[-1].split() == ["total", "30", "30"]


def test_bad_regex_exits_2(cli, root):
    out = cli(str(root), "--regex", "(")
    assert out.returncode == 2 and "`event_regex` must be a valid Python regular expression" in out.stderr


def test_counting_never_writes(cli, tmp_path):
    root = write_synthetic(tmp_path / "ds", episodes=2, length=10, obs_shape=(1,), events_every=4)
    before = tree_snapshot(root)
    out = cli(str(root))
    assert out.returncode == 0 and "nothing is written" in out.stderr
    assert tree_snapshot(root) == before


def test_build_saves_the_index_with_derivations(cli, tmp_path):
    root = write_synthetic(tmp_path / "ds", episodes=2, length=10, obs_shape=(1,), events_every=4)
    out = cli(str(root), "--build", "--column", "r=x", "next/reward", "--regex", "r=x")
    assert out.returncode == 0, out.stderr
    assert re.match(r"saved .*events/index: \d+ events, 6 names$", out.stdout.splitlines()[0])
    index = EventIndex.open(root, build_missing="error")
    assert index.derived == [{"kind": "column", "prefix": "r=x", "key": ["next", "reward"]}]
    assert out.stdout.splitlines()[-1].split()[1] == str(index.counts()["r=x:+1"])


def test_rebuild_keeps_the_saved_derivations_unless_told(cli, tmp_path):
    root = write_synthetic(tmp_path / "ds", episodes=2, length=10, obs_shape=(1,), events_every=4)
    EventIndex.build(root, columns={"reward": ("next", "reward")})
    want = EventIndex.load(root)
    out = cli(str(root), "--rebuild", "--regex", "reward")
    assert out.returncode == 0, out.stderr
    again = EventIndex.open(root, build_missing="error")
    assert again.derived == want.derived and again.counts() == want.counts()
    assert "reward:+1" in again.counts()
    out = cli(str(root), "--rebuild", "--no-derived")
    assert out.returncode == 0, out.stderr
    bare = EventIndex.open(root, build_missing="error")
    assert bare.derived == [] and not any(n.startswith("reward:") for n in bare.counts())


def test_column_without_build_exits_2(cli, root):
    out = cli(str(root), "--column", "r", "next/reward")
    assert out.returncode == 2 and "`--column`, `--counters` and `--no-derived` need `--build`" in out.stderr


def test_help_shows_every_default(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # what a run without a terminal gets, whatever runs the tests
    out = cli("--help")
    options = re.findall(r"^  (--[a-z-]+)", out.stdout, re.M)
    assert out.returncode == 0 and len(options) == 14
    assert len(re.findall(r"\(default: [^)]*\)", re.sub(r"\s+", " ", out.stdout))) == len(options)
