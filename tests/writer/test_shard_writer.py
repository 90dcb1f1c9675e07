"""ShardWriter: schema, rolling shards, finals, metadata, events, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import read_events

from torchrl_ext import ShardedStorage, ShardWriter, read_manifest
from torchrl_ext.synthetic import make_episode, obs_value, write_synthetic


def test_episode_spanning_shards_reads_back(tmp_path):
    root = write_synthetic(tmp_path / "ds", episodes=2, length=7, obs_shape=(2,), shard_rows=3)
    s = ShardedStorage(root)
    assert [sh.rows for sh in s.manifest.shards] == [3, 3, 3, 3, 2]
    td = s[:]
    assert td["episode"].tolist() == [0] * 7 + [1] * 7
    assert td["step"].tolist() == list(range(7)) * 2
    np.testing.assert_array_equal(td["observation"][:, 1].numpy(), obs_value(td["episode"].numpy(), td["step"].numpy()))


def test_next_observation_never_crosses_episodes(tmp_path):
    # episode 0 provides a final observation, episode 1 does not (zeros)
    root = write_synthetic(tmp_path / "ds", episodes=3, length=4, obs_shape=(2,), shard_rows=5)
    td = ShardedStorage(root)[:]
    nxt = td["next", "observation"][:, 0].tolist()
    assert nxt[0:4] == obs_value(0, np.arange(1, 5)).tolist()  # last = stored final obs_value(0, 4)
    assert nxt[4:8] == obs_value(1, np.arange(1, 4)).tolist() + [0]
    assert nxt[8:12] == obs_value(2, np.arange(1, 5)).tolist()


def test_reward_done_action_values(tmp_path):
    root = write_synthetic(tmp_path / "ds", episodes=2, length=5, obs_shape=(1,))
    td = ShardedStorage(root)[:]
    e, t = td["episode"], td["step"]
    torch.testing.assert_close(td["next", "reward"][:, 0], (e + t / 1000.0).float())
    assert td["action"].tolist() == ((e + t) % 6).tolist()
    assert td["next", "done"][:, 0].tolist() == (t == 4).tolist()
    assert td["next", "terminated"][:, 0].tolist() == (t == 4).tolist()
    assert not td["next", "truncated"].any()


def test_metadata_goes_to_the_episode_table(tmp_path):
    root = write_synthetic(tmp_path / "ds", episodes=5, length=3, obs_shape=(1,))
    table = ShardedStorage(root).episode_table()
    assert table.select("game = 'pong'").tolist() == [0, 2, 4]
    assert table.select("score >= ?", (3.0,)).tolist() == [3, 4]
    assert table.metadata(3) == {"game": "breakout", "score": 3.0}
    assert table.row(3) == {"episode": 3, "first_row": 9, "length": 3, "has_final": 0,
                            "game": "breakout", "score": 3.0}
    assert table.rows("score >= ?", (3.0,)) == [{"episode": 3, "length": 3, "game": "breakout", "score": 3.0},
                                                {"episode": 4, "length": 3, "game": "pong", "score": 4.0}]
    with pytest.raises(ValueError, match="episode filter 'nope >' is not valid SQL"):
        table.select("nope >")


def test_events_are_logged_with_global_rows(tmp_path):
    root = write_synthetic(tmp_path / "ds", episodes=2, length=5, obs_shape=(1,), events_every=2, shard_rows=4)
    events = read_events(root)
    assert [row for _, _, row, _, _ in events] == [0, 2, 4, 4, 5, 7, 9, 9]
    assert [name for _, _, _, name, _ in events] == ["tick:0", "tick:2", "tick:1", "episode_end"] * 2


def test_terminated_and_truncated_default_from_done(tmp_path):
    ep = make_episode(0, 3, (1,))
    del ep["next", "terminated"], ep["next", "truncated"]
    with ShardWriter.create(tmp_path / "ds") as w:
        w.add_episode(ep)
    td = ShardedStorage(tmp_path / "ds")[:]
    assert td["next", "terminated"][:, 0].tolist() == [False, False, True]
    assert td["next", "truncated"][:, 0].tolist() == [False, False, False]


@pytest.mark.parametrize(
    "mutate, error, match",
    [
        (lambda ep: ep.set("observation", ep["observation"].float()), TypeError,
         r"'observation',\) has dtype float32, the dataset expects uint8; cast it"),
        (lambda ep: ep.set("action", ep["action"][:, None].expand(3, 2).contiguous()), ValueError,
         r"'action',\) has per-step shape \(2,\), the dataset expects \(\)"),
        (lambda ep: ep.set("extra", torch.zeros(3)), ValueError, r"has keys \[\('extra',\)\] that the dataset's schema does not"),
        (lambda ep: ep.exclude("action"), ValueError, r"episode is missing \('action',\)"),
    ],
)
def test_schema_mismatch_is_refused(tmp_path, mutate, error, match):
    with ShardWriter.create(tmp_path / "ds") as w:
        w.add_episode(make_episode(0, 3, (2,)))
        with pytest.raises(error, match=match):
            w.add_episode(mutate(make_episode(1, 3, (2,))))
    assert ShardedStorage(tmp_path / "ds").num_episodes == 1


def test_missing_ted_keys(tmp_path):
    ep = make_episode(0, 3, (1,)).exclude(("next", "done"))
    with ShardWriter.create(tmp_path / "ds") as w, pytest.raises(ValueError, match="missing \\('next', 'done'\\)"):
        w.add_episode(ep)


@pytest.mark.parametrize(
    "events, match",
    [
        ([(5, "x", 1.0)], r"event 'x' has step 5; expected an int in \[0, 3\)"),
        ([(0, "", 1.0)], "event name must be a non-empty str"),
        ([(0, "x")], r"an event must be a \(step, name, value\) triple"),
        ([(True, "x", 1.0)], r"event 'x' has step True; expected an int"),
        ([(1, "x", "big")], r"event 'x' has value 'big'; expected a number"),
    ],
)
def test_bad_events(tmp_path, events, match):
    with ShardWriter.create(tmp_path / "ds") as w, pytest.raises(ValueError, match=match):
        w.add_episode(make_episode(0, 3, (1,)), events=events)


def test_bad_metadata_name_is_refused_at_add(tmp_path):
    with ShardWriter.create(tmp_path / "ds") as w:
        with pytest.raises(ValueError, match="""episode metadata key 'bad"name' must be a str of 1 to 128"""):
            w.add_episode(make_episode(0, 3, (1,)), metadata={'bad"name': 1})


def test_metadata_names_as_other_datasets_write_them(tmp_path):
    with ShardWriter.create(tmp_path / "ds") as w:
        w.add_episode(make_episode(0, 3, (1,)), metadata={"Active playtime": 12.5, "env:game": "pong"})
        w.add_episode(make_episode(1, 3, (1,)), metadata={"Active playtime": 3.0, "env:game": "qbert"})
    table = ShardedStorage(tmp_path / "ds").episode_table()
    assert table.select('"Active playtime" > 5 AND "env:game" = ?', ("pong",)).tolist() == [0]


@pytest.mark.parametrize(
    "first, second, match",
    [
        ({"tags": 1.0}, {"tags": ["a", "b"]}, "`tags` must be an int, float or str, got list"),
        ({"q": 0.5}, {"q": "high"}, "`q` is text here but real in earlier episodes"),
        ({"q": 1}, {"q": None}, "`q` must be an int, float or str, got NoneType"),
    ],
)
def test_bad_metadata_costs_no_earlier_episode(tmp_path, first, second, match):
    with ShardWriter.create(tmp_path / "ds", shard_rows=100) as w:
        w.add_episode(make_episode(0, 3, (1,)), metadata=first)
        with pytest.raises(TypeError, match=match):
            w.add_episode(make_episode(1, 3, (1,)), metadata=second)
        w.add_episode(make_episode(2, 4, (1,)), metadata=first)
    storage = ShardedStorage(tmp_path / "ds")
    assert (len(storage), storage.num_episodes) == (7, 2)
    assert storage.get(slice(3, 7))["observation"][:, 0].tolist() == make_episode(2, 4, (1,))["observation"][:, 0].tolist()


def test_create_refuses_existing_dataset(tmp_path):
    write_synthetic(tmp_path / "ds", episodes=1, length=2, obs_shape=(1,))
    with pytest.raises(FileExistsError, match="a dataset already exists here; use ShardWriter.open"):
        ShardWriter.create(tmp_path / "ds")


def test_second_writer_is_refused(tmp_path):
    with ShardWriter.create(tmp_path / "ds"):
        with pytest.raises(RuntimeError, match="another ShardWriter holds this dataset"):
            ShardWriter.open(tmp_path / "ds")


def test_invalid_shard_rows(tmp_path):
    with pytest.raises(ValueError, match="`shard_rows` must be a positive int or None, got 0"):
        ShardWriter.create(tmp_path / "ds", shard_rows=0)


def test_byte_budget_sets_rows_per_shard(tmp_path):
    with ShardWriter.create(tmp_path / "ds", shard_bytes=10_000) as w:
        w.add_episode(make_episode(0, 5, (84, 84)))
    m = read_manifest(tmp_path / "ds")
    row_bytes = sum(c.row_bytes for c in m.schema)
    assert m.shard_rows == 10_000 // row_bytes == 1
    assert [s.rows for s in m.shards] == [1] * 5


def test_refresh_sees_new_shards(tmp_path):
    root = write_synthetic(tmp_path / "ds", episodes=2, length=4, obs_shape=(1,), shard_rows=3)
    s = ShardedStorage(root)
    assert len(s) == 8
    write_synthetic(root, episodes=4, length=4, obs_shape=(1,))
    assert s.refresh() == 8
    assert s[-1]["episode"].item() == 3 and len(s) == 16


def test_storage_selects_episodes_by_sql(tmp_path):
    root = write_synthetic(tmp_path / "ds", episodes=6, length=3, obs_shape=(1,))
    storage = ShardedStorage(root)
    assert storage.select_episodes("game = ? AND score > 1", ("pong",)).tolist() == [2, 4]
    assert storage.select_episodes(None) is None
    with pytest.raises(ValueError, match="episode filter 'score >>' is not valid SQL"):
        storage.select_episodes("score >>")


def test_create_with_overwrite_replaces_a_dataset_only(tmp_path):
    root = write_synthetic(tmp_path / "ds", episodes=3, length=4, obs_shape=(1,), events_every=2)
    with ShardWriter.create(root, overwrite=True) as w:
        w.add_episode(make_episode(7, 2, (1,)))
    storage = ShardedStorage(root)
    assert (len(storage), storage.num_episodes, storage.manifest.event_logs) == (2, 1, [])
    (root / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"holds other files \(notes.txt\)"):
        ShardWriter.create(root, overwrite=True)
    assert (root / "notes.txt").read_text() == "mine" and len(ShardedStorage(root)) == 2  # nothing lost


def test_a_failed_write_stops_the_writer_and_keeps_the_last_commit(tmp_path, monkeypatch):
    from torchrl_ext.writer import PendingShard

    root = tmp_path / "ds"
    w = ShardWriter.create(root, shard_rows=4)
    w.add_episode(make_episode(0, 4, (1,)))  # one full shard, committed
    real = PendingShard.append

    def disk_full(self, columns):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(PendingShard, "append", disk_full)
    with pytest.raises(OSError, match="No space left"):
        w.add_episode(make_episode(1, 3, (1,)))
    monkeypatch.setattr(PendingShard, "append", real)
    with pytest.raises(RuntimeError, match="an earlier write failed .*reopen with ShardWriter.open"):
        w.add_episode(make_episode(2, 3, (1,)))
    w.close()
    assert (len(ShardedStorage(root)), ShardedStorage(root).num_episodes) == (4, 1)
    with ShardWriter.open(root) as again:
        assert again.num_episodes == 1
        again.add_episode(make_episode(1, 3, (1,)))
    assert len(ShardedStorage(root)) == 7
