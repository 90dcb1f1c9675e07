"""Runs from a bucket stream, many runs at once (processes, Ray), a killed multi-run conversion resumes."""

from __future__ import annotations

import itertools
import os
import signal

import pytest
from gcs_server import upload_tree
from helpers import assert_same_datasets, built_once, run_killed
from interop.atari_dqn.replay_logs_maker import make_replay_logs

from torchrl_ext import ShardedStorage, ShardWriter, read_manifest
from torchrl_ext.interop.atari_dqn import (
    DONE_NAME,
    BucketReplayLogs,
    convert_atari_run,
    convert_atari_runs,
    convert_replay_logs,
)
from torchrl_ext.sources import ChecksumMismatchError

SMALL = (6, 6)
C = 200
RUNS = {"Pong/1": 31, "Pong/2": 32, "Breakout/1": 33}


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """Replay logs of three runs in the bucket layout, and a reference conversion of each."""
    def build(directory):
        base, ref = directory / "logs", directory / "ref"
        for run_id, seed in RUNS.items():
            make_replay_logs(base / run_id, capacity=C, num_episodes=16, mean_len=40, obs_shape=SMALL, seed=seed)
            game, run = run_id.split("/")
            convert_replay_logs(base / run_id, ref / run_id, game=game, run=int(run), shard_bytes=3000,
                                progress=False)
        return base, ref

    return built_once(tmp_path_factory, "atari_dqn_runs_logs", build)


# ---------------------------------------------------------------------- streaming from a bucket
@pytest.fixture
def bucket_run(gcs_server, logs):
    base, _ = logs
    upload_tree(gcs_server.client, gcs_server.bucket, "dqn/Pong/1/", base / "Pong" / "1")
    return gcs_server


def test_streaming_from_bucket_equals_local_conversion(bucket_run, logs, tmp_path):
    _, ref = logs
    src = BucketReplayLogs(bucket_run.bucket, "dqn/Pong/1/replay_logs/", chunk_bytes=4096)
    convert_replay_logs(src, tmp_path / "ds", game="Pong", run=1, shard_bytes=3000, progress=False)
    assert_same_datasets(tmp_path / "ds", ref / "Pong" / "1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no .gz file lands on disk


def test_interrupted_stream_resumes(bucket_run, logs, tmp_path, monkeypatch):
    _, ref = logs
    original, calls = ShardWriter.add_episode, {"n": 0}

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 7:
            raise KeyboardInterrupt("connection lost")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ShardWriter, "add_episode", interrupted)
    src = BucketReplayLogs.for_run("Pong", 1, bucket=bucket_run.bucket)
    with pytest.raises(KeyboardInterrupt, match="connection lost"):
        convert_replay_logs(src, tmp_path / "ds", game="Pong", run=1, shard_bytes=3000, progress=False)
    monkeypatch.setattr(ShardWriter, "add_episode", original)
    convert_replay_logs(src, tmp_path / "ds", game="Pong", run=1, shard_bytes=3000, progress=False)
    assert_same_datasets(tmp_path / "ds", ref / "Pong" / "1")


def test_streamed_bytes_failing_crc32c_are_refused(bucket_run, tmp_path):
    src = BucketReplayLogs(bucket_run.bucket, "dqn/Pong/1/replay_logs/")
    src._blobs["$store$_observation_ckpt.0.gz"]._properties["crc32c"] = "AAAAAA=="
    with pytest.raises(ChecksumMismatchError, match=r"observation_ckpt\.0\.gz: crc32c of the streamed bytes does not match"):
        convert_replay_logs(src, tmp_path / "ds", game="Pong", run=1, progress=False)


def test_streamed_bytes_fall_back_to_md5_without_crc32c(bucket_run, tmp_path):
    src = BucketReplayLogs(bucket_run.bucket, "dqn/Pong/1/replay_logs/")
    props = src._blobs["$store$_observation_ckpt.0.gz"]._properties
    props.pop("crc32c", None)
    props["md5Hash"] = "AAAAAAAAAAAAAAAAAAAAAA=="
    with pytest.raises(ChecksumMismatchError, match=r"observation_ckpt\.0\.gz: md5 of the streamed bytes does not match"):
        convert_replay_logs(src, tmp_path / "ds", game="Pong", run=1, progress=False)


def test_progress_callback_counts_frames_of_every_checkpoint_up_to_the_total(logs, tmp_path):
    from torchrl_ext.interop.atari_dqn import LocalReplayLogs, list_checkpoints
    from torchrl_ext.interop.atari_dqn.records import read_capacity

    base, _ = logs
    src = LocalReplayLogs(base / "Pong" / "2")
    seen = []
    convert_replay_logs(src, tmp_path / "ds", game="Pong", run=2,
                        progress=lambda done, total: seen.append((done, total)))
    total = read_capacity(src, 0) * len(list_checkpoints(base / "Pong" / "2"))
    assert seen[0] == (0, total) and seen[-1] == (total, total)
    assert {t for _, t in seen} == {total}
    assert all(a < b for (a, _), (b, _) in itertools.pairwise(seen))  # frames as they are read, never twice


@pytest.mark.slow
def test_converted_run_is_pushed_under_game_and_run(gcs_server, logs, tmp_path, monkeypatch):
    base, ref = logs
    monkeypatch.setenv("TORCHRL_EXT_CACHE", str(tmp_path / "cache"))
    path = convert_atari_run("Pong/2", tmp_path / "out", local_dir=base, shard_bytes=3000, progress=False,
                             push_to="gs://test-bucket/atari")
    assert path == tmp_path / "out" / "Pong" / "2"
    assert_same_datasets("gs://test-bucket/atari/Pong/2", ref / "Pong" / "2")
    names = {b.name for b in gcs_server.client.list_blobs(gcs_server.bucket)}
    assert "atari/Pong/2/dataset.json" in names and all(n.startswith("atari/Pong/2/") for n in names)


# ---------------------------------------------------------------------- many runs
@pytest.mark.slow  # spawned workers and manager, each importing torch
def test_process_executor_converts_each_run(logs, tmp_path):
    base, ref = logs
    paths = convert_atari_runs(list(RUNS), tmp_path, num_workers=2, local_dir=base, shard_bytes=3000, progress=False)
    assert paths == [tmp_path / r for r in RUNS]
    for run_id in RUNS:
        assert_same_datasets(tmp_path / run_id, ref / run_id)
        assert (tmp_path / run_id / DONE_NAME).is_file()


@pytest.mark.slow  # spawned workers and manager, each importing torch
def test_failed_run_is_reported_and_the_others_finish(logs, tmp_path):
    base, ref = logs
    (tmp_path / "logs" / "Pong").mkdir(parents=True)
    os.symlink(base / "Pong" / "1", tmp_path / "logs" / "Pong" / "1")
    with pytest.raises(RuntimeError, match=r"1 of 2 runs failed: Pong/2: FileNotFoundError: .*no replay logs for Pong/2"):
        convert_atari_runs(["Pong/1", "Pong/2"], tmp_path / "out", num_workers=1, local_dir=tmp_path / "logs",
                           shard_bytes=3000, progress=False)
    assert_same_datasets(tmp_path / "out" / "Pong" / "1", ref / "Pong" / "1")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [({"executor": "dask"}, ValueError, r"`executor` must be one of \('process', 'ray'\)"),
     ({"num_workers": 0}, ValueError, "`num_workers` must be a positive int"),
     ({"threads": 2}, TypeError, r"unexpected keyword arguments \['threads'\]"),
     ({"address": "auto"}, ValueError, "`address` is for executor='ray'"),
     ({"push_to": "bucket/x"}, ValueError, "`push_to` must be a URL like gs://bucket/prefix, got 'bucket/x'")],
)
def test_bad_arguments(tmp_path, logs, kwargs, error, match):
    with pytest.raises(error, match=match):
        convert_atari_runs(["Pong/1"], tmp_path, local_dir=logs[0], progress=False, **kwargs)


@pytest.mark.parametrize("ids", [["Pong/1", "Pong/1"], ["Pong"], []])
def test_bad_run_ids(tmp_path, ids):
    with pytest.raises(ValueError, match=r"must not repeat a run|run id must look like 'Pong/1'|is empty"):
        convert_atari_runs(ids, tmp_path, progress=False)




def _replace_calls(fn):
    calls = [0]
    real = os.replace

    def counting(*a, **k):
        calls[0] += 1
        return real(*a, **k)

    os.replace = counting
    try:
        fn()
    finally:
        os.replace = real
    return calls[0]


@pytest.mark.slow
def test_killed_multi_run_conversion_resumes(logs, tmp_path):
    base, ref = logs
    first = _replace_calls(lambda: convert_replay_logs(base / "Pong" / "1", tmp_path / "count1", game="Pong", run=1,
                                                       shard_bytes=3000, progress=False))
    second = _replace_calls(lambda: convert_replay_logs(base / "Pong" / "2", tmp_path / "count2", game="Pong", run=2,
                                                        shard_bytes=3000, progress=False))
    out = tmp_path / "out"
    # a forked child dies with its whole process group (itself, its worker, the manager) at the K-th
    # os.replace of the worker: a kill at a deterministic point of the second run
    code = run_killed(first + second // 2, convert_atari_runs, ["Pong/1", "Pong/2"], out, num_workers=1,
                      mp_start_method="fork", local_dir=base, shard_bytes=3000, progress=False, group=True,
                      hooked=("replace",))
    assert code == -signal.SIGKILL
    assert (out / "Pong" / "1" / DONE_NAME).is_file() and not (out / "Pong" / "2" / DONE_NAME).exists()
    assert 0 < read_manifest(out / "Pong" / "2").num_episodes < ShardedStorage(ref / "Pong" / "2").num_episodes
    done_first = (out / "Pong" / "1" / "dataset.json").stat().st_mtime_ns
    convert_atari_runs(["Pong/1", "Pong/2"], out, num_workers=1, local_dir=base, shard_bytes=3000, progress=False)
    assert (out / "Pong" / "1" / "dataset.json").stat().st_mtime_ns == done_first  # not converted again
    for run_id in ("Pong/1", "Pong/2"):
        assert_same_datasets(out / run_id, ref / run_id)


@pytest.mark.slow
def test_ray_executor_on_a_running_cluster(logs, tmp_path, ray_cluster):
    base, ref = logs
    before = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    paths = convert_atari_runs(["Pong/1", "Breakout/1"], tmp_path, executor="ray", num_workers=2, local_dir=base,
                               shard_bytes=3000, progress=False)
    assert paths == [tmp_path / "Pong" / "1", tmp_path / "Breakout" / "1"]
    for run_id in ("Pong/1", "Breakout/1"):
        assert_same_datasets(tmp_path / run_id, ref / run_id)
    assert ray_cluster.is_initialized()  # a cluster the caller started is left running
    assert os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") == before


def test_deadline_reaches_the_bucket_stream(bucket_run, tmp_path):
    logs = BucketReplayLogs.for_run("Pong", 1, bucket=bucket_run.bucket, deadline=2.5)
    assert logs.deadline == 2.5
    with pytest.raises(ValueError, match="`deadline` must be a positive number of seconds, got 0"):
        convert_atari_run("Pong/1", tmp_path / "root", bucket=bucket_run.bucket, deadline=0, progress=False)
