"""Metadata keys the episode table cannot hold are refused at ``add_episode``, costing no earlier episode."""

from __future__ import annotations

import numpy as np
import pytest

from torchrl_ext import ShardedStorage, ShardWriter
from torchrl_ext.synthetic import make_episode, obs_value


def _check_committed(root, episodes, key="Score"):
    storage = ShardedStorage(root)
    assert storage.num_episodes == len(episodes)
    td = storage[:]
    np.testing.assert_array_equal(td["observation"][:, 0].numpy(),
                                  obs_value(td["episode"].numpy(), td["step"].numpy()))
    table = storage.episode_table()
    try:
        assert [table.metadata(e) for e in range(len(episodes))] == [{key: float(e)} for e in episodes]
    finally:
        table.close()


def test_key_differing_only_in_case_is_refused_before_anything_is_lost(tmp_path):
    root = tmp_path / "ds"
    with ShardWriter.create(root, shard_rows=100) as w:  # every episode waits in one shard
        w.add_episode(make_episode(0, 3, (1,)), metadata={"Score": 0.0})
        w.add_episode(make_episode(1, 3, (1,)), metadata={"Score": 1.0})
        with pytest.raises(ValueError, match="episode metadata `score` differs from `Score` only in case, and SQL "
                                             "column names ignore case; use one spelling for every episode"):
            w.add_episode(make_episode(2, 3, (1,)), metadata={"score": 2.0})
        assert w.num_episodes == 2
        w.add_episode(make_episode(2, 3, (1,)), metadata={"Score": 2.0})
    _check_committed(root, [0, 1, 2])


def test_case_duplicates_in_one_episode_are_refused(tmp_path):
    with ShardWriter.create(tmp_path / "ds") as w:
        with pytest.raises(ValueError, match="`score` differs from `Score` only in case"):
            w.add_episode(make_episode(0, 3, (1,)), metadata={"Score": 1.0, "score": 2.0})
        assert w.num_episodes == 0


def test_case_duplicate_of_a_committed_column_is_refused_after_reopening(tmp_path):
    root = tmp_path / "ds"
    with ShardWriter.create(root) as w:
        w.add_episode(make_episode(0, 3, (1,)), metadata={"Score": 0.0})
    with ShardWriter.open(root) as w:
        with pytest.raises(ValueError, match="`SCORE` differs from `Score` only in case"):
            w.add_episode(make_episode(1, 3, (1,)), metadata={"SCORE": 1.0})
        w.add_episode(make_episode(1, 3, (1,)), metadata={"Score": 1.0})
    _check_committed(root, [0, 1])


@pytest.mark.parametrize("name, problem", [("a\nb", "has a non-printable character"), ("", "has 0 characters"),
                                           ("x" * 129, "has 129 characters"), ("Episode", "is reserved")])
def test_names_outside_the_tables_alphabet_are_refused(tmp_path, name, problem):
    with ShardWriter.create(tmp_path / "ds") as w:
        with pytest.raises(ValueError, match=f"must be a str of 1 to 128 characters .*; it {problem}; rename it"):
            w.add_episode(make_episode(0, 3, (1,)), metadata={name: 1})


def test_more_keys_than_the_table_allows_are_refused(tmp_path):
    root = tmp_path / "ds"
    with ShardWriter.create(root, shard_rows=100) as w:
        w.add_episode(make_episode(0, 3, (1,)), metadata={"Score": 0.0})
        with pytest.raises(ValueError, match="episode metadata would have 1001 keys, at most 1000 are allowed"):
            w.add_episode(make_episode(1, 3, (1,)), metadata={f"k{i}": i for i in range(1000)})
    _check_committed(root, [0])
