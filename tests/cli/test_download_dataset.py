"""``torchrl-ext download gs://bucket/prefix --root R``: the selected episodes of a pushed dataset, on disk.

A URL in place of the dataset kind means ``download dataset URL``; the Atari
mode (``download atari-dqn``) is tested in ``test_download.py``.
"""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
from helpers import read_events, run_cli, write_scored_dataset

from torchrl_ext import EventIndex, ShardedStorage
from torchrl_ext.remote.publish import push
from torchrl_ext.storages import EpisodeView

KEYS = ["observation", "action", ("next", "reward"), ("next", "done"), ("next", "observation")]


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    return write_scored_dataset(tmp_path_factory.mktemp("download") / "ds")


@pytest.fixture
def url(gcs_server, local):
    push(local, f"gs://{gcs_server.bucket}/data/ds", progress=False)
    return f"gs://{gcs_server.bucket}/data/ds"


@pytest.fixture
def closed_port(monkeypatch) -> int:
    """``STORAGE_EMULATOR_HOST`` on a loopback port nothing listens on: any request would fail."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    return port


def cached_shards(cache) -> list[str]:
    (root,) = list(cache.iterdir())
    return sorted(os.listdir(root / "shards"))


def same_rows(out, view) -> None:
    got, want = ShardedStorage(out).get(slice(None)), view.get(slice(None))
    for key in KEYS:
        assert np.array_equal(got[key].numpy(), want[key].numpy()), key


@pytest.mark.parametrize("form", [[], ["dataset"]])
def test_where_writes_the_selected_episodes(capsys, url, local, tmp_path, form):
    out, cache = tmp_path / "out", tmp_path / "cache"
    proc = run_cli(capsys, "download", *form, url, "--root", str(out), "--where", "Score >= 60",
                   "--cache-dir", str(cache), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{out}\n"
    same_rows(out, EpisodeView(local, "Score >= 60"))
    assert ShardedStorage(out).episode_table().values(["episode", "Score"]) == [(0, 60), (1, 70)]
    assert [(e, s, n, v) for e, s, _, n, v in read_events(out)] == [(0, 1, "jump", 6.0), (1, 1, "jump", 7.0)]
    assert cached_shards(cache) == ["000003"]


def test_events_keep_the_episodes_holding_a_window(capsys, url, local, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    proc = run_cli(capsys, "download", url, "--root", str(out), "--events", "kill_entity:.*", "--win-len", "4",
                   "--cache-dir", str(cache), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    same_rows(out, EpisodeView(local, episodes=[2, 5]))
    assert ShardedStorage(out).episode_table().values(["Score"]) == [(20,), (50,)]
    assert [(e, s, n) for e, s, _, n, _ in read_events(out)] == [
        (0, 1, "jump"), (0, 3, "kill_entity:skeleton"), (1, 1, "jump"), (1, 6, "kill_entity:zombie")]
    assert EventIndex.open(out, build_missing="error").counts()["kill_entity:zombie"] == 1
    assert cached_shards(cache) == ["000001", "000002"]


def test_events_and_where_together(capsys, url, tmp_path):
    out = tmp_path / "out"
    proc = run_cli(capsys, "download", url, "--root", str(out), "--where", "Score >= 40", "--events", "kill_.*",
                   "--win-len", "2", "--bias", "1", "--cache-dir", str(tmp_path / "cache"), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert ShardedStorage(out).episode_table().values(["Score"]) == [(50,)]


def test_an_unknown_column_is_one_line_and_exit_2(capsys, url, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    proc = run_cli(capsys, "download", url, "--root", str(out), "--where", "Nope >= 1", "--cache-dir", str(cache))
    (line,) = proc.stderr.splitlines()
    assert proc.returncode == 2
    assert line.startswith("torchrl-ext download: error: episode filter 'Nope >= 1' is not valid SQL over columns ")
    assert line.endswith("'Score']: no such column: Nope")
    assert not out.exists() and cached_shards(cache) == []


def test_a_bad_regex_is_refused_before_the_bucket_is_asked(capsys, closed_port, tmp_path):
    proc = run_cli(capsys, "download", "gs://test-bucket/data/ds", "--root", str(tmp_path / "out"),
                   "--events", "(", "--win-len", "4")
    assert proc.returncode == 2
    assert proc.stderr == ("torchrl-ext download: error: `--events` must be a valid Python regular expression, got "
                           "'(' (missing ), unterminated subpattern at position 0)\n")


def test_events_without_a_window_length_name_the_flags(capsys, closed_port, tmp_path):
    proc = run_cli(capsys, "download", "gs://test-bucket/data/ds", "--root", str(tmp_path / "out"),
                   "--events", "kill_.*")
    assert proc.returncode == 2
    assert proc.stderr == ("torchrl-ext download: error: `--win-len` is required with `--events` 'kill_.*', got None;"
                           " pass the window length in steps, e.g. win_len=64\n")


def test_an_event_name_that_matches_nothing_lists_the_names(capsys, url, tmp_path):
    proc = run_cli(capsys, "download", url, "--root", str(tmp_path / "out"), "--events", "fight", "--win-len", "4",
                   "--cache-dir", str(tmp_path / "cache"))
    assert proc.returncode == 2
    assert proc.stderr == (
        "torchrl-ext download: error: `--events` 'fight' matches none of the 3 event names (re.match, anchored at "
        "the start); events per name: jump (8), kill_entity:skeleton (1), kill_entity:zombie (1); pick one of these "
        "names\n")


def test_a_url_without_a_dataset_is_exit_1(capsys, gcs_server, tmp_path):
    proc = run_cli(capsys, "download", f"gs://{gcs_server.bucket}/nothing", "--root", str(tmp_path / "out"),
                   "--cache-dir", str(tmp_path / "cache"))
    (line,) = proc.stderr.splitlines()
    assert proc.returncode == 1
    assert line.startswith(f"torchrl-ext download: error: gs://{gcs_server.bucket}/nothing/: no dataset.json there; ")
    assert not (tmp_path / "out").exists()


def test_a_word_that_is_neither_a_kind_nor_a_url_is_a_usage_error(capsys, tmp_path):
    proc = run_cli(capsys, "download", "pong", "--root", str(tmp_path))
    assert proc.returncode == 2
    assert "argument KIND: invalid choice: 'pong' (choose from 'atari-dqn', 'dataset')" in proc.stderr


def test_help_of_the_url_form_is_the_dataset_kind(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    proc = run_cli(capsys, "download", "gs://bucket/prefix", "--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: torchrl-ext download dataset ")
    for text in ("--where WHERE", "(default: every episode)", "--events REGEX", "--win-len WIN_LEN",
                 "--threads THREADS", "(default: 8)", "--root ROOT", "(required)"):
        assert text in proc.stdout, text


def test_run_again_keeps_the_dataset(capsys, url, local, tmp_path):
    argv = ["download", url, "--root", str(tmp_path / "out"), "--where", "Score <= 10",
            "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    assert run_cli(capsys, *argv).returncode == 0
    proc = run_cli(capsys, *argv)
    assert proc.returncode == 0, proc.stderr
    assert ShardedStorage(tmp_path / "out").episode_table().values(["Score"]) == [(0,), (10,)]
    same_rows(tmp_path / "out", EpisodeView(local, "Score <= 10"))
