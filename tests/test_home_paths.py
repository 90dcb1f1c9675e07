"""``~`` in a dataset root, source or destination means the home directory, for every API that takes one.

Each test runs with ``HOME`` set to a fresh directory and the working
directory set to another, so a ``~`` taken literally would show up as a
``./~`` directory in the working directory.
"""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from torchrl_ext import (
    EpisodeView,
    EventIndex,
    EventWindowDataset,
    ShardedStorage,
    ShardWriter,
    add_episode_metadata,
    preprocess,
    read_manifest,
)
from torchrl_ext.cli import main
from torchrl_ext.datasets import FrameStackStorage
from torchrl_ext.export import export_episodes
from torchrl_ext.synthetic import make_episode, obs_value, write_synthetic

EPISODES, LENGTH = 3, 4


@pytest.fixture
def home(tmp_path, monkeypatch):
    """``HOME`` and the working directory, two fresh directories; yields ``HOME``."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    return home


def _no_literal_tilde():
    assert not Path("~").exists(), f"a literal ~ directory was created in {Path.cwd()}"


def _synthetic(root):
    return write_synthetic(root, episodes=EPISODES, length=LENGTH, obs_shape=(2,), events_every=2)


def _assert_synthetic_values(storage):
    td = storage[np.arange(len(storage))]
    episode, step = np.repeat(np.arange(EPISODES), LENGTH), np.tile(np.arange(LENGTH), EPISODES)
    np.testing.assert_array_equal(td["episode"].numpy(), episode)
    np.testing.assert_array_equal(td["step"].numpy(), step)
    np.testing.assert_array_equal(td["observation"][:, 0].numpy(), obs_value(episode, step))
    np.testing.assert_array_equal(td["action"].numpy(), (episode + step) % 6)


def _identity(td):
    return td


# ---------------------------------------------------------------------- writing at ~/d
def _with_shard_writer(home):
    with ShardWriter.create("~/d", shard_rows=8) as w:
        for e in range(EPISODES):
            w.add_episode(make_episode(e, LENGTH, (2,)))


def _resumed_shard_writer(home):
    with ShardWriter.create(home / "d", shard_rows=8) as w:
        w.add_episode(make_episode(0, LENGTH, (2,)))
    with ShardWriter.open("~/d") as w:
        for e in range(1, EPISODES):
            w.add_episode(make_episode(e, LENGTH, (2,)))


WRITERS = {
    "ShardWriter.create": _with_shard_writer,
    "ShardWriter.open": _resumed_shard_writer,
    "write_synthetic": lambda home: _synthetic("~/d"),
    "preprocess source and dest": lambda home: (_synthetic(home / "src"),
                                                preprocess("~/src", _identity, "~/d", num_workers=0, pbar=False)),
    "preprocess where=": lambda home: (_synthetic(home / "src"),
                                       preprocess("~/src", _identity, "~/d", where="1 = 1", pbar=False)),
    "export_episodes": lambda home: (_synthetic(home / "src"), export_episodes("~/src", "~/d", progress=False)),
}


@pytest.mark.parametrize("write", list(WRITERS.values()), ids=list(WRITERS))
def test_a_dataset_written_at_tilde_lands_in_home(home, write):
    write(home)
    _no_literal_tilde()
    assert (home / "d" / "dataset.json").is_file()
    _assert_synthetic_values(ShardedStorage("~/d"))
    _assert_synthetic_values(ShardedStorage(home / "d"))


# ---------------------------------------------------------------------- reading ~/d
def _rows(storage):
    return storage.get(np.arange(len(storage))).to_dict()


def _windows(root):
    ds = EventWindowDataset(root, event_regex="tick:0", win_len=2)
    return [ds[i]["observation"] for i in range(len(ds))]


def _cli(*args):
    def run(root, capsys):
        code = main([args[0], str(root), *args[1:]])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        return captured.out
    return run


READERS = {
    "ShardedStorage": lambda root, capsys: (str(ShardedStorage(root).root), _rows(ShardedStorage(root))),
    "FrameStackStorage": lambda root, capsys: _rows(FrameStackStorage(root, stack=2)),
    "EpisodeView": lambda root, capsys: _rows(EpisodeView(root, episodes=[1, 2])),
    "EventWindowDataset": lambda root, capsys: _windows(root),
    "EventIndex.load": lambda root, capsys: EventIndex.load(root).counts(),
    "EventIndex.open": lambda root, capsys: EventIndex.open(root, build_missing="error").counts(),
    "read_manifest": lambda root, capsys: read_manifest(root).to_json(),
    "torchrl-ext info": _cli("info"),
    "torchrl-ext verify": _cli("verify"),
    "torchrl-ext events": _cli("events", "--regex", "tick"),
}


def _equal(a, b):
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b


@pytest.mark.parametrize("read", list(READERS.values()), ids=list(READERS))
def test_a_dataset_at_tilde_reads_like_its_absolute_path(home, capsys, read):
    _synthetic(home / "d")
    EventIndex.build(home / "d")
    via_tilde = read("~/d", capsys)
    via_absolute = read(str(home / "d"), capsys)
    _no_literal_tilde()
    assert _equal(via_tilde, via_absolute)
    assert via_tilde  # something was read: rows, windows, counts or printed lines


def test_the_cli_prints_the_expanded_root(home, capsys):
    _synthetic(home / "d")
    assert main(["info", "~/d"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"dataset   {home / 'd'}"
    assert f"rows      {EPISODES * LENGTH}" in lines and f"episodes  {EPISODES}" in lines
    _no_literal_tilde()


# ---------------------------------------------------------------------- steps that write into ~/d
def test_event_index_build_writes_into_home(home):
    _synthetic(home / "d")
    counts = EventIndex.build("~/d").counts()
    _no_literal_tilde()
    assert (home / "d" / "events" / "index").is_dir()
    assert EventIndex.load(home / "d").counts() == counts and counts["episode_end"] == EPISODES


def test_episode_metadata_is_added_in_home(home):
    _synthetic(home / "d")
    add_episode_metadata("~/d", "length_x2", lambda td: 2 * int(td.shape[0]), progress=False)
    _no_literal_tilde()
    table = ShardedStorage(home / "d").episode_table()
    try:
        assert [v for (v,) in table.values(["length_x2"])] == [2 * LENGTH] * EPISODES
    finally:
        table.close()


def test_relative_paths_stay_relative(home):
    _synthetic("runs/d")
    assert (Path.cwd() / "runs" / "d" / "dataset.json").is_file()
    storage = ShardedStorage("runs/d")
    assert storage.root == Path("runs/d")
    _assert_synthetic_values(storage)


# ---------------------------------------------------------------------- imports, generation, Atari DQN
class TickEnv:
    """Never stepped here: the dataset at ``~/d`` already holds the episodes asked for."""


def test_generate_resumes_the_dataset_in_home(home):
    from torchrl_ext.generate import generate

    with ShardWriter.create(home / "d", source={"kind": "generated", "seed": 5, "max_steps": 10}) as w:
        for e in range(2):
            w.add_episode(make_episode(e, LENGTH, (2,)))
    stats = generate(TickEnv, None, "~/d", num_episodes=2, max_steps=10, seed=5, progress=False)
    _no_literal_tilde()
    assert (stats.generated, stats.skipped) == (0, 2)  # found at $HOME/d: complete, no worker started
    with pytest.raises(ValueError, match=re.escape(f"{home / 'd'} was generated with seed=5, max_steps=10, got seed=6")):
        generate(TickEnv, None, "~/d", num_episodes=3, max_steps=10, seed=6, progress=False)


def test_crowdplay_import_reads_and_writes_in_home(home):
    from torchrl_ext.interop.crowdplay import (
        import_crowdplay,
        make_trajectory,
        write_crowdplay_dir,
    )

    player = "game_0>player_0"
    frames = np.random.default_rng(0).integers(0, 256, (5, 210, 160, 3), dtype=np.uint8)
    agent = {"frames": frames, "actions": np.arange(5) % 6, "rewards": np.zeros(5), "dones": np.arange(5) == 4,
             "ram": np.zeros((5, 128), np.uint8), "lives": np.full(5, 3)}
    episode = {"episode_id": "e1", "environment_id": "env0", "task_id": "space_invaders_plain",
               "steps": make_trajectory({player: agent}), "env_keyword_data": {"all": {"game": "space_invaders"}},
               "keyword_data": {"all": {"created_on": datetime.datetime(2021, 10, 2)}, player: {"Score": 5}},
               "users": {player: {"user_id": "u", "permanent_user_id": "p"}}}
    write_crowdplay_dir("~/cp", [episode])
    assert (home / "cp" / "dataset.sqlite").is_file()
    storage = import_crowdplay("~/cp", "~/d", progress=False)
    _no_literal_tilde()
    assert storage.root == home / "d"
    np.testing.assert_array_equal(ShardedStorage(home / "d")[np.arange(5)]["observation"].numpy(), frames)
    assert read_manifest(home / "d").source["dir"] == str(home / "cp")


def test_minestudio_import_and_its_dataset_dirs_in_home(home):
    from torchrl_ext.interop.minestudio import import_minestudio
    from torchrl_ext.interop.minestudio.synthetic import write_minestudio_dataset

    write_minestudio_dataset("~/ms", (320,), names=["p0-100"])  # events from step 128 on, as MineStudio
    assert (home / "ms").is_dir()
    import_minestudio("~/ms", "~/d", progress=False)
    _no_literal_tilde()
    window = {"modal_kernel_callbacks": ["action"], "win_len": 16}
    via_tilde = EventWindowDataset(dataset_dirs=["~/d"], **window)
    via_absolute = EventWindowDataset(dataset_dirs=[str(home / "d")], **window)
    assert len(via_tilde) == len(via_absolute) > 0
    for i in range(len(via_tilde)):
        assert _equal(via_tilde[i], via_absolute[i])


def test_atari_dqn_logs_and_root_in_home(home):
    from interop.atari_dqn.replay_logs_maker import make_replay_logs

    from torchrl_ext.interop.atari_dqn import AtariDQNExperienceReplay

    rec = make_replay_logs(home / "logs" / "Pong" / "2", capacity=120, num_episodes=4, mean_len=20, seed=1)
    rb = AtariDQNExperienceReplay("Pong/2", 4, root="~/atari", local_dir="~/logs")
    _no_literal_tilde()
    assert rb.data_path == home / "atari" / "Pong" / "2" and (rb.data_path / "atari_dqn.json").is_file()
    assert json.loads((rb.data_path / "atari_dqn.json").read_text())["complete"] is True
    expected = rec.expected_episodes()
    storage = ShardedStorage(rb.data_path)
    np.testing.assert_array_equal(storage[np.arange(len(storage))]["observation"].numpy(),
                                  np.concatenate([e["obs"] for e in expected]))
