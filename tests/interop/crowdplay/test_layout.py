"""CrowdPlay's layout: tables and files read as written; every pickle restricted; corrupt data named."""

from __future__ import annotations

import bz2
import datetime
import os
import pickle
import shutil
import sqlite3

import pytest
from torchrl_ext.interop.crowdplay.maker import P0, P1, SPECS, TWO_PLAYER

from torchrl_ext import FormatError
from torchrl_ext.interop.crowdplay import (
    CrowdPlayDir,
    import_crowdplay,
    load_trajectory,
    plain_value,
)
from torchrl_ext.sources.safe_pickle import UnsafePickleError


class _Payload:
    def __init__(self, flag):
        self.flag = flag

    def __reduce__(self):
        return (os.system, (f"touch {self.flag}",))


@pytest.fixture
def cp_copy(cp_dir, tmp_path):
    return shutil.copytree(cp_dir, tmp_path / "cp")


def test_records_join_environment_task_keywords_and_users(cp_dir):
    src = CrowdPlayDir(cp_dir)
    assert [e.episode_id for e in src.episodes] == sorted([*SPECS, TWO_PLAYER[0]])
    ep = src.episodes[0]
    assert (ep.environment_id, ep.task_id) == ("env0", "space_invaders_insideout")
    assert ep.keyword_data[P0]["Active playtime"] == datetime.timedelta(seconds=55)
    assert ep.env_keyword_data["all"] == {"game": "space_invaders", "task": "insideout", "source": "mturk"}
    assert ep.users == {P0: {"user_id": "u0", "permanent_user_id": "p0"}}
    assert ep.trajectory == cp_dir / "trajectories" / "0a1f.pickle.bz2"
    assert set(src.episodes[-1].keyword_data) == {"all", P0, P1}


def test_the_first_suffix_in_crowdplays_order_wins(cp_copy):
    plain = cp_copy / "trajectories" / "0a1f.pickle"
    plain.write_bytes(bz2.decompress((cp_copy / "trajectories" / "0a1f.pickle.bz2").read_bytes()))
    assert CrowdPlayDir(cp_copy).episodes[0].trajectory == plain


def test_malicious_trajectory_is_refused_without_running(cp_copy, tmp_path):
    flag = tmp_path / "pwned"
    (cp_copy / "trajectories" / "0a1f.pickle.bz2").write_bytes(bz2.compress(pickle.dumps([_Payload(flag)])))
    with pytest.raises(UnsafePickleError, match="posix.system"):
        import_crowdplay(cp_copy, tmp_path / "ds", progress=False)
    assert not flag.exists()


def test_malicious_keyword_cell_is_refused_without_running(cp_copy, tmp_path):
    flag = tmp_path / "pwned"
    conn = sqlite3.connect(cp_copy / "dataset.sqlite")
    conn.execute("UPDATE episodekeyworddata SET value = ? WHERE key = 'Score'", (pickle.dumps(_Payload(flag)),))
    conn.commit()
    conn.close()
    with pytest.raises(UnsafePickleError, match=r"episodekeyworddata\(.*Score\).*posix.system"):
        CrowdPlayDir(cp_copy)
    assert not flag.exists()


def test_truncated_bz2_is_a_format_error(cp_copy, tmp_path):
    path = cp_copy / "trajectories" / "1b2e.pickle.bz2"
    path.write_bytes(path.read_bytes()[:-500])
    with pytest.raises(FormatError, match=r"1b2e\.pickle\.bz2: .*truncated or corrupt"):
        load_trajectory(path)
    with pytest.raises(FormatError, match="1b2e"):
        import_crowdplay(cp_copy, tmp_path / "ds", progress=False)


def test_garbage_bz2_is_a_format_error(cp_copy):
    path = cp_copy / "trajectories" / "1b2e.pickle.bz2"
    path.write_bytes(b"BZh9" + b"\x00" * 64)
    with pytest.raises(FormatError, match="compressed trajectory cannot be read"):
        load_trajectory(path)


@pytest.mark.slow
def test_a_decompression_bomb_stops_at_its_bound(tmp_path):
    path = tmp_path / "bomb.pickle.bz2"
    path.write_bytes(bz2.compress(pickle.dumps([{"prev_obs": b"\0" * (256 << 20)}])))  # 256 MiB in ~1 kB
    with pytest.raises(FormatError, match=r"bomb\.pickle\.bz2: the pickle holds more than \d+ bytes, the most this "
                                          r"record may hold"):
        load_trajectory(path)


def test_a_pickle_that_is_no_step_list_is_a_format_error(tmp_path):
    path = tmp_path / "x.pickle"
    path.write_bytes(pickle.dumps({"not": "a list"}))
    with pytest.raises(FormatError, match="expected a pickled list of step dicts, found dict"):
        load_trajectory(path)


def test_missing_trajectory_file_is_named_or_skipped(cp_copy, tmp_path):
    (cp_copy / "trajectories" / "2c3d.pickle.bz2").unlink()
    with pytest.raises(FormatError, match="episode 2c3d has no trajectory file .*skip_missing=True"):
        import_crowdplay(cp_copy, tmp_path / "ds", progress=False)
    out = import_crowdplay(cp_copy, tmp_path / "ds2", skip_missing=True, progress=False)
    assert "2c3d" not in [r[0] for r in out.episode_table().values(["episode_id"])]
    assert out.num_episodes == 5


def test_bad_sqlite_is_a_format_error(cp_copy):
    (cp_copy / "dataset.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(FormatError, match="dataset.sqlite: not a readable CrowdPlay SQLite database"):
        CrowdPlayDir(cp_copy)


def test_sqlite_without_crowdplays_tables_is_a_format_error(tmp_path):
    tmp_path.joinpath("d").mkdir()
    sqlite3.connect(tmp_path / "d" / "dataset.sqlite").execute("CREATE TABLE other (x)").connection.close()
    with pytest.raises(FormatError, match=r"missing \['episodes', 'environments'"):
        CrowdPlayDir(tmp_path / "d")


def test_a_directory_without_sqlite_says_what_it_expects(tmp_path):
    with pytest.raises(FileNotFoundError, match="no dataset.sqlite; expected a CrowdPlay dataset directory"):
        CrowdPlayDir(tmp_path)


def test_malformed_step_is_a_format_error(tmp_path):
    from torchrl_ext.interop.crowdplay import agent_episode

    with pytest.raises(FormatError, match="step 1 of agent 'a' is malformed"):
        agent_episode([{"prev_obs": {"a": {"image": [[0]]}}, "action": {"a": 1}, "reward": {"a": 0},
                        "done": {"a": False}}, {"prev_obs": {"a": {"image": [[0]]}}}], "a", "t.pickle")


@pytest.mark.parametrize(("value", "stored"), [
    (datetime.timedelta(minutes=1, seconds=5), 65.0), (datetime.datetime(2021, 9, 17, 14, 28, 37), "2021-09-17T14:28:37"),
    (datetime.date(2021, 9, 17), "2021-09-17"), (True, 1), (7, 7), (0.25, 0.25), ("mturk", "mturk"),
    ({"b": 1, "a": [1, 2]}, '{"a": [1, 2], "b": 1}'), (None, None),
])
def test_keyword_values_become_sql_values(value, stored):
    assert plain_value(value) == stored


def test_writing_over_a_crowdplay_directory_is_refused(cp_dir):
    from torchrl_ext.interop.crowdplay import write_crowdplay_dir

    with pytest.raises(FileExistsError, match="holds a dataset.sqlite already"):
        write_crowdplay_dir(cp_dir, [])


def test_frames_come_as_crowdplays_ordered_dicts(cp_dir):
    from collections import OrderedDict

    steps = load_trajectory(cp_dir / "trajectories" / "0a1f.pickle.bz2")
    assert type(steps[0]["prev_obs"][P0]) is OrderedDict and steps[0]["prev_obs"][P0]["image"].shape == (210, 160, 3)
