"""CrowdPlay import: columns equal the trajectories, one episode per agent, typed metadata, resume, CLI."""

from __future__ import annotations

import datetime
import sqlite3

import numpy as np
import pytest
from helpers import run_cli
from torchrl_ext.interop.crowdplay.maker import (
    P0,
    P1,
    SPECS,
    TWO_PLAYER,
    make_crowdplay_dir,
)

import torchrl_ext.interop.crowdplay.convert as convert
from torchrl_ext import FormatError, ShardedStorage, read_manifest
from torchrl_ext.interop.crowdplay import import_crowdplay

ORDER = [(eid, P0) for eid in sorted(SPECS)] + [(TWO_PLAYER[0], P0), (TWO_PLAYER[0], P1)]


def _meta(storage, columns):
    table = storage.episode_table()
    try:
        return table.values(columns)
    finally:
        table.close()


def test_one_episode_per_agent_in_id_order(cp_storage):
    assert _meta(cp_storage, ["episode_id", "agent_id"]) == ORDER
    lengths = [SPECS[e][1] if e in SPECS else TWO_PLAYER[2] for e, _ in ORDER]
    assert cp_storage.episode_bounds[1].tolist() == lengths


@pytest.mark.parametrize("position", range(len(ORDER)))
def test_columns_equal_the_trajectory(cp_storage, cp_episodes, position):
    eid, agent = ORDER[position]
    steps = next(e["steps"] for e in cp_episodes if e["episode_id"] == eid)
    first, length = cp_storage.episode_bounds
    td = cp_storage.get(np.arange(first[position], first[position] + length[position]))
    frames = np.stack([s["prev_obs"][agent]["image"] for s in steps])
    assert np.array_equal(td["observation"].numpy(), frames)
    assert td["action"].tolist() == [s["action"][agent]["game"] for s in steps]
    assert td["next", "reward"].reshape(-1).tolist() == [float(s["reward"][agent]) for s in steps]
    assert td["ram"].numpy().tolist() == [s["info"][agent]["RAM"] for s in steps]
    assert td["lives"].tolist() == [s["info"][agent]["ale.lives"] for s in steps]
    assert td["user_type"].tolist() == [s.get("user_type", {}).get(agent, 0) for s in steps]
    dones = [s["done"][agent] for s in steps]
    assert td["next", "terminated"].reshape(-1).tolist() == dones
    assert td["next", "truncated"].reshape(-1).tolist() == [False] * (len(steps) - 1) + [not dones[-1]]
    assert td["next", "done"].reshape(-1).tolist() == [False] * (len(steps) - 1) + [True]
    assert np.array_equal(td["next", "observation"][:-1].numpy(), frames[1:])
    assert not td["next", "observation"][-1].any()


def test_frames_are_stored_losslessly_compressed(cp_storage):
    col = cp_storage.manifest.column(("observation",))
    assert col.encoding == "zstd" and col.shape == (210, 160, 3) and col.dtype == np.uint8


def test_metadata_is_typed_under_crowdplay_names(cp_storage):
    columns = cp_storage.episode_table().metadata_columns()
    assert {k: columns[k] for k in ("Score", "Active playtime", "Correct aliens shot (fraction)", "created_on",
                                    "env:game", "env:Time played", "game", "user_type")} == {
        "Score": "INTEGER", "Active playtime": "REAL", "Correct aliens shot (fraction)": "REAL",
        "created_on": "TEXT", "env:game": "TEXT", "env:Time played": "REAL", "game": "TEXT", "user_type": "INTEGER"}
    row = cp_storage.episode_table().metadata(1)
    assert {k: row[k] for k in ("episode_id", "agent_id", "environment_id", "task_id", "Score", "Active playtime",
                                "Correct aliens shot (fraction)", "created_on", "env:game", "env:task",
                                "env:source", "source", "user_id", "permanent_user_id", "trajectory_file")} == {
        "episode_id": "1b2e", "agent_id": P0, "environment_id": "env1", "task_id": "space_invaders_insideout",
        "Score": 260, "Active playtime": 31.0, "Correct aliens shot (fraction)": 1.0,
        "created_on": (datetime.datetime(2021, 10, 2, 13, 49, 31) + datetime.timedelta(days=1)).isoformat(),
        "env:game": "space_invaders", "env:task": "insideout", "env:source": "email", "source": "email",
        "user_id": "u1", "permanent_user_id": "p1", "trajectory_file": "trajectories/1b2e.pickle.bz2"}


def test_two_player_episodes_carry_each_agents_data(cp_storage):
    rows = _meta(cp_storage, ["agent_id", "Score", "user_type", "episode_id"])[-2:]
    assert rows == [(P0, 40, 1, TWO_PLAYER[0]), (P1, 70, 2, TWO_PLAYER[0])]


def test_crowdplay_score_filter_is_wrong_ours_is_right(cp_dir, cp_storage):
    conn = sqlite3.connect(cp_dir / "dataset.sqlite")
    theirs = {r[0] for r in conn.execute(
        "SELECT episode_id FROM episodekeyworddata WHERE key = 'Score' AND value > 100")}
    conn.close()
    assert theirs == set(SPECS) | {TWO_PLAYER[0]}  # a BLOB compares greater than any number
    ours = cp_storage.select_episodes('"Score" > 100')
    assert [_meta(cp_storage, ["episode_id"])[e][0] for e in ours] == ["0a1f", "1b2e"]


def test_events_mark_rewards_and_lost_lives(cp_storage):
    from torchrl_ext import EventIndex

    index = EventIndex.build(cp_storage.root, save=False)
    rewards = cp_storage.reader.gather_column(("next", "reward"), np.arange(len(cp_storage))).reshape(-1)
    names = index.names[index.name_id]
    sel = np.char.startswith(names.astype(str), "reward:")
    assert index.row[sel].tolist() == np.flatnonzero(rewards).tolist()
    assert index.value[sel].tolist() == rewards[rewards != 0].tolist()
    assert names[sel].tolist() == ["reward:+1" if r > 0 else "reward:-1" for r in rewards[rewards != 0]]


@pytest.mark.slow
@pytest.mark.parametrize("compression", ["gz", "none"])
def test_gzip_and_plain_pickles_import_the_same(tmp_path, cp_storage, compression):
    src = make_crowdplay_dir(tmp_path / "cp", compression=compression, two_player=False)
    out = import_crowdplay(src, tmp_path / "ds", shard_rows=64, progress=False)
    rows = np.arange(len(out))
    assert np.array_equal(out.reader.gather_column(("observation",), rows),
                          cp_storage.reader.gather_column(("observation",), rows))


def test_interrupted_import_resumes_to_the_same_dataset(tmp_path, cp_dir, cp_storage, monkeypatch):
    real = convert.load_trajectory
    calls = []

    def flaky(path):
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(path)

    monkeypatch.setattr(convert, "load_trajectory", flaky)
    with pytest.raises(KeyboardInterrupt):
        import_crowdplay(cp_dir, tmp_path / "ds", shard_rows=64, progress=False)
    partial = read_manifest(tmp_path / "ds").num_episodes
    assert 0 < partial < len(ORDER)
    monkeypatch.setattr(convert, "load_trajectory", real)
    out = import_crowdplay(cp_dir, tmp_path / "ds", shard_rows=64, progress=False)
    assert _meta(out, ["episode_id", "agent_id"]) == ORDER
    rows = np.arange(len(out))
    for key in (("observation",), ("action",), ("ram",), ("next", "reward")):
        assert np.array_equal(out.reader.gather_column(key, rows), cp_storage.reader.gather_column(key, rows))
    again = import_crowdplay(cp_dir, tmp_path / "ds", shard_rows=64, progress=False)  # complete: nothing added
    assert len(again) == len(cp_storage)


@pytest.mark.parametrize("stop", ["interrupt", "bad trajectory"])
def test_import_stopped_before_its_first_commit_resumes(tmp_path, cp_dir, cp_storage, monkeypatch, stop):
    real = convert.load_trajectory

    def first_fails(path):
        if stop == "interrupt":
            raise KeyboardInterrupt
        raise FormatError(f"{path}: damaged")

    monkeypatch.setattr(convert, "load_trajectory", first_fails)
    with pytest.raises((KeyboardInterrupt, FormatError)):
        import_crowdplay(cp_dir, tmp_path / "ds", shard_rows=64, progress=False)
    assert read_manifest(tmp_path / "ds").num_episodes == 0
    monkeypatch.setattr(convert, "load_trajectory", real)
    out = import_crowdplay(cp_dir, tmp_path / "ds", shard_rows=64, progress=False)
    assert _meta(out, ["episode_id", "agent_id"]) == ORDER
    rows = np.arange(len(out))
    assert np.array_equal(out.reader.gather_column(("observation",), rows),
                          cp_storage.reader.gather_column(("observation",), rows))


@pytest.mark.slow
def test_a_root_imported_from_elsewhere_is_refused(tmp_path, cp_storage):
    other = make_crowdplay_dir(tmp_path / "other", two_player=False)
    with pytest.raises(ValueError, match="choose a new `root`"):
        import_crowdplay(other, cp_storage.root, progress=False)


def test_cli_imports_and_reports(tmp_path, cp_dir, capsys):
    proc = run_cli(capsys, "import", "crowdplay", str(cp_dir), "--root", str(tmp_path / "ds"), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    storage = ShardedStorage(tmp_path / "ds")
    assert proc.stdout.strip() == f"{storage.root}: 6 episodes, {len(storage)} frames, {storage.num_shards} shards"


def test_cli_reports_a_missing_directory(tmp_path, capsys):
    proc = run_cli(capsys, "import", "crowdplay", str(tmp_path), "--root", str(tmp_path / "ds"))
    assert proc.returncode == 2
    assert "no dataset.sqlite" in proc.stderr
