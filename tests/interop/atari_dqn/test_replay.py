"""AtariDQNExperienceReplay over generated replay logs: keys, dtypes, values, frame stacks, TorchRL's own layout."""

from __future__ import annotations

import gzip
import json
import warnings

import numpy as np
import pytest
import torch
from interop.atari_dqn.replay_logs_maker import make_replay_logs
from tensordict import TensorDict

from torchrl_ext import FormatError, ShardedStorage
from torchrl_ext.datasets import FrameStackStorage
from torchrl_ext.interop.atari_dqn import DONE_NAME, AtariDQNExperienceReplay


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    base = tmp_path_factory.mktemp("logs")
    rec = make_replay_logs(base / "Pong" / "2", capacity=250, num_episodes=14, mean_len=45, seed=3)
    return base, rec


@pytest.fixture(scope="module")
def root(logs, tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    AtariDQNExperienceReplay("Pong/2", 4, root=root, local_dir=logs[0])
    return root


def _reference(root):
    return ShardedStorage(root / "Pong" / "2")


def test_sample_keys_dtypes_shapes(root, logs):
    rb = AtariDQNExperienceReplay("Pong/2", 32, root=root, download=False)
    torch.manual_seed(0)
    s = rb.sample()
    assert s["observation"].shape == (32, 84, 84) and s["observation"].dtype == torch.uint8
    assert s["next", "observation"].shape == (32, 84, 84)
    assert s["action"].dtype == torch.int32 and s["action"].shape == (32,)
    assert s["next", "reward"].dtype == torch.float32 and s["next", "reward"].shape == (32, 1)
    for key in ("done", "terminated", "truncated", ("next", "done"), ("next", "terminated"), ("next", "truncated")):
        assert s[key].dtype == torch.bool and s[key].shape == (32, 1)
    assert not s["done"].any()


def test_sampled_values_match_writer_record(root, logs):
    _, rec = logs
    rb = AtariDQNExperienceReplay("Pong/2", 64, root=root, download=False)
    torch.manual_seed(1)
    s = rb.sample()
    first = {e: g for g, e in zip(range(len(rec.episode)), rec.episode) if e >= 0 and rec.step[g] == 0}
    meta = _reference(root).episode_table()
    for i in range(64):
        ep, step = int(s["episode"][i]), int(s["step"][i])
        g = int(meta.metadata(ep)["first_index"]) + step
        np.testing.assert_array_equal(s["observation"][i].numpy(), rec.obs[g])
        assert int(s["action"][i]) == rec.action[g]
        assert float(s["next", "reward"][i, 0]) == rec.reward[g]
        assert bool(s["next", "terminated"][i, 0]) == bool(rec.terminal[g])
        assert rec.episode[g] >= 0 and g >= first[rec.episode[g]]


@pytest.mark.parametrize("pad", ["zeros", "first"])
def test_frame_stack_stays_inside_episode(root, pad):
    rb = AtariDQNExperienceReplay("Pong/2", 128, root=root, download=False, stack=4, stack_pad=pad,
                                  num_slices=2)
    plain = _reference(root)
    first, _ = plain.episode_bounds
    torch.manual_seed(2)
    s = rb.sample()
    rows = s["index"].reshape(-1).numpy()
    assert s["observation"].shape == (128, 4, 84, 84)
    for i, r in enumerate(rows):
        f = first[np.searchsorted(first, r, side="right") - 1]
        for j in range(4):
            src = r - 3 + j
            if src >= f:
                want = plain.get(int(src))["observation"].numpy()
            else:
                want = np.zeros((84, 84), np.uint8) if pad == "zeros" else plain.get(int(f))["observation"].numpy()
            np.testing.assert_array_equal(s["observation"][i, j].numpy(), want)
        np.testing.assert_array_equal(s["next", "observation"][i, :3].numpy(), s["observation"][i, 1:].numpy())
        np.testing.assert_array_equal(s["next", "observation"][i, 3].numpy(),
                                      plain.get(int(r))["next", "observation"].numpy())


def test_terminal_next_observation_is_zeros(root):
    plain = _reference(root)
    rb = AtariDQNExperienceReplay("Pong/2", 8, root=root, download=False, stack=4)
    first, length = plain.episode_bounds
    last = torch.as_tensor(first + length - 1)
    td = rb.storage.get(last)
    assert not td["next", "observation"][:, 3].any()
    np.testing.assert_array_equal(td["next", "observation"][:, :3].numpy(), td["observation"][:, 1:].numpy())


@pytest.mark.parametrize("replacement", [True, False])
def test_slices_never_cross_episodes(root, replacement):
    rb = AtariDQNExperienceReplay("Pong/2", 64, root=root, download=False, slice_len=16,
                                  replacement=replacement)
    torch.manual_seed(3)
    s = rb.sample()
    s = s.reshape(-1, 16)  # without replacement, slices of episodes shorter than 16 are dropped
    assert s.shape[0] >= 1
    assert (s["episode"] == s["episode"][:, :1]).all()
    assert (s["step"][:, 1:] - s["step"][:, :-1] == 1).all()


def test_missing_dataset_without_download_says_how(tmp_path):
    with pytest.raises(FileNotFoundError, match="pass download=True, or local_dir="):
        AtariDQNExperienceReplay("Pong/1", root=tmp_path, download=False)


@pytest.mark.parametrize("bad", ["Pong", "Pong/6", "Tetris/1", 3])
def test_bad_dataset_id(tmp_path, bad):
    with pytest.raises(ValueError, match="`dataset_id` must be '<game>/<run>'"):
        AtariDQNExperienceReplay(bad, root=tmp_path, download=False)


def test_available_datasets_lists_games_and_runs():
    ids = AtariDQNExperienceReplay.available_datasets
    assert len(ids) == 50 * 5 and "Pong/5" in ids and "AirRaid/1" in ids


def test_download_from_bucket_converts_and_samples(gcs_server, tmp_path):
    from gcs_server import upload_tree

    rec = make_replay_logs(tmp_path / "logs", capacity=120, num_episodes=8, mean_len=30, obs_shape=(84, 84), seed=5)
    upload_tree(gcs_server.client, gcs_server.bucket, "dqn/Breakout/3/", tmp_path / "logs")
    rb = AtariDQNExperienceReplay("Breakout/3", 16, root=tmp_path / "root", bucket=gcs_server.bucket,
                                  checkpoints=[0, 1])
    expected = rec.expected_episodes([0, 1])
    storage = ShardedStorage(rb.dataset_path)
    assert len(storage) == sum(len(e["action"]) for e in expected)
    got = storage.get(np.arange(len(storage)))["observation"].numpy()
    np.testing.assert_array_equal(got, np.concatenate([e["obs"] for e in expected]))
    assert not (tmp_path / "root" / ".downloads" / "Breakout" / "3").exists()


def test_cli_download_from_local_dir(logs, tmp_path, capsys):
    from torchrl_ext.cli import main

    base, rec = logs
    code = main(["download", "atari-dqn", "Pong/2", "--root", str(tmp_path), "--local-dir", str(base),
                 "--checkpoints", "0-1"])
    assert code == 0
    out = capsys.readouterr().out.strip()
    assert out == str(tmp_path / "Pong" / "2")
    assert len(ShardedStorage(out)) == sum(len(e["action"]) for e in rec.expected_episodes([0, 1]))


def test_cli_rejects_bad_checkpoint_list(logs, tmp_path, capsys):
    from torchrl_ext.cli import main

    code = main(["download", "atari-dqn", "Pong/2", "--root", str(tmp_path), "--local-dir", str(logs[0]),
                 "--checkpoints", "zero"])
    assert code == 2
    assert "`--checkpoints` must look like 0-4,49, got 'zero'" in capsys.readouterr().err


def _halve_frames(td):
    td["observation"] = td["observation"] // 2
    td["next", "observation"] = td["next", "observation"] // 2
    return td


def test_preprocess_method_writes_and_swaps_storage(root, tmp_path):
    rb = AtariDQNExperienceReplay("Pong/2", 16, root=root, download=False)
    source = _reference(root)
    new = rb.preprocess(_halve_frames, num_workers=2, dest=tmp_path / "half", swap=True)
    assert len(new) == len(source) and rb.storage is new
    rows = np.arange(len(source))
    np.testing.assert_array_equal(new[rows]["observation"].numpy(), source[rows]["observation"].numpy() // 2)
    np.testing.assert_array_equal(new[rows]["next", "observation"].numpy(), source[rows]["next", "observation"].numpy() // 2)
    torch.manual_seed(0)
    batch = rb.sample()
    assert int(batch["observation"].max()) <= 127


def test_preprocess_swap_keeps_frame_stacks_and_data_path(root, tmp_path):
    rb = AtariDQNExperienceReplay("Pong/2", 16, root=root, download=False, stack=4)
    rows = np.arange(len(rb.storage))
    before = rb.storage[rows]
    assert tuple(before["observation"].shape[1:]) == (4, 84, 84)
    new = rb.preprocess(_halve_frames, num_workers=0, dest=tmp_path / "half", swap=True)
    assert rb.storage is new and isinstance(new, FrameStackStorage) and new.stack == 4
    after = rb.storage[rows]
    np.testing.assert_array_equal(after["observation"].numpy(), before["observation"].numpy() // 2)
    np.testing.assert_array_equal(after["next", "observation"].numpy(), before["next", "observation"].numpy() // 2)
    assert tuple(rb.sample()["observation"].shape) == (16, 4, 84, 84)
    assert rb.data_path == tmp_path / "half"


# ---------------------------------------------------------------------- several runs
@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    make_replay_logs(base / "Pong" / "1", capacity=250, num_episodes=10, mean_len=45, seed=8)
    make_replay_logs(base / "Breakout" / "2", capacity=250, num_episodes=12, mean_len=45, seed=9)
    root = tmp_path_factory.mktemp("root2")
    AtariDQNExperienceReplay(["Pong/1", "Breakout/2"], 4, root=root, local_dir=base)
    return root, ShardedStorage(root / "Pong" / "1"), ShardedStorage(root / "Breakout" / "2"), base


@pytest.mark.slow
def test_several_runs_sample_uniformly_from_one_buffer(two_runs):
    root, a, b, _ = two_runs
    rb = AtariDQNExperienceReplay(["Pong/1", "Breakout/2"], 256, root=root, download=False)
    assert len(rb) == len(a) + len(b) and rb.dataset_path == [root / "Pong" / "1", root / "Breakout" / "2"]
    torch.manual_seed(0)
    s = rb.sample()
    single = AtariDQNExperienceReplay("Pong/1", 4, root=root, download=False).sample()
    assert set(s.keys(True, True)) == set(single.keys(True, True))
    idx = s["index"].numpy()
    in_b = idx >= len(a)
    assert 0 < in_b.sum() < len(idx)
    for i in range(len(idx)):
        part, local = (b, idx[i] - len(a)) if in_b[i] else (a, idx[i])
        ref = part.get(int(local))
        np.testing.assert_array_equal(s["observation"][i].numpy(), ref["observation"].numpy())
        np.testing.assert_array_equal(s["next", "observation"][i].numpy(), ref["next", "observation"].numpy())
        assert int(s["action"][i]) == int(ref["action"]) and int(s["step"][i]) == int(ref["step"])
        assert int(s["episode"][i]) == int(ref["episode"]) + (a.num_episodes if in_b[i] else 0)


@pytest.mark.slow
def test_several_runs_slices_and_stacks_never_cross_runs(two_runs):
    root, a, b, _ = two_runs
    rb = AtariDQNExperienceReplay(["Pong/1", "Breakout/2"], 64, root=root, download=False, stack=4, slice_len=8)
    assert rb.episodes.unique().numel() == a.num_episodes + b.num_episodes
    torch.manual_seed(1)
    s = rb.sample().reshape(8, 8)
    parts = rb.storage.part_of(s["index"].reshape(-1)).reshape(8, 8)
    assert (parts == parts[:, :1]).all() and (s["episode"] == s["episode"][:, :1]).all()
    first = s[:, 0]
    for k in range(8):
        part = rb.storage.parts[int(parts[k, 0])]
        local = int(first["index"][k]) - (len(a) if int(parts[k, 0]) else 0)
        np.testing.assert_array_equal(first["observation"][k].numpy(), part.get(local)["observation"].numpy())


def test_preprocess_of_several_runs_is_refused(two_runs, tmp_path):
    root, _, _, _ = two_runs
    rb = AtariDQNExperienceReplay(["Pong/1", "Breakout/2"], 4, root=root, download=False)
    with pytest.raises(ValueError, match="preprocess works on one run"):
        rb.preprocess(_halve_frames, dest=tmp_path / "x")


@pytest.mark.parametrize("bad", [[], ["Pong/1", "Pong/1"], ["Pong/1", "Tetris/2"]])
def test_bad_lists_of_ids(tmp_path, bad):
    with pytest.raises(ValueError, match=r"empty list|must not repeat a run|`dataset_id` must be '<game>/<run>'"):
        AtariDQNExperienceReplay(bad, root=tmp_path, download=False)


@pytest.mark.slow
def test_cli_converts_several_runs(two_runs, tmp_path, capsys):
    from torchrl_ext.cli import main

    _, a, b, base = two_runs
    code = main(["download", "atari-dqn", "Pong/1", "Breakout/2", "--root", str(tmp_path), "--local-dir", str(base),
                 "--num-procs", "1"])
    assert code == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "Pong" / "1"), str(tmp_path / "Breakout" / "2")]
    assert len(ShardedStorage(tmp_path / "Pong" / "1")) == len(a)
    assert len(ShardedStorage(tmp_path / "Breakout" / "2")) == len(b)


# ---------------------------------------------------------------------- layout="torchrl" against TorchRL's own class
# What torchrl.data.datasets.AtariDQNExperienceReplay (torchrl 0.14) returns, read from its code
# (_AtariStorage._proc_td): the checkpoint files' arrays as loaded (action int32), flags uint8 [B],
# ("next", "done") = the terminal flag, metadata = the row's file: add_count, invalid_range, dataset_id.
TORCHRL_LEAVES = {
    "observation": (torch.uint8, (84, 84)), "action": (torch.int32, ()), "done": (torch.uint8, ()),
    "terminated": (torch.uint8, ()), "truncated": (torch.uint8, ()), "index": (torch.int64, ()),
    ("next", "observation"): (torch.uint8, (84, 84)), ("next", "reward"): (torch.float32, ()),
    ("next", "done"): (torch.uint8, ()), ("next", "terminated"): (torch.uint8, ()),
    ("next", "truncated"): (torch.uint8, ()),
}
TORCHRL_METADATA = {"invalid_range": (torch.int64, (5,)), "add_count": (torch.int64, ()), "dataset_id": str}


def _torchrl_dataset_dir(replay_logs, dest, dataset_id):
    """TorchRL's on-disk form of a run, one split per checkpoint file, as its ``_preproc_run`` writes it.

    Restated with public tensordict calls: ``data/observation`` gets one extra zero row, the
    reward and terminal files go under ``data/next``, ``add_count`` and ``invalid_range`` stay at
    the split's top level, and ``dataset_id`` is a non-tensor entry.
    """
    splits = {}
    for path in sorted(replay_logs.glob("*.gz")):
        name, ckpt, _ = path.name.split(".")
        with gzip.open(path) as fh:
            splits.setdefault(int(ckpt), {})[name.removesuffix("_ckpt").removeprefix("$store$_")] = np.load(fh)
    for ckpt, arr in splits.items():
        obs = arr["observation"]
        td = TensorDict({
            "data": {"observation": torch.from_numpy(np.concatenate([obs, np.zeros_like(obs[:1])])),
                     "action": torch.from_numpy(arr["action"]),
                     "next": {"reward": torch.from_numpy(arr["reward"]),
                              "terminated": torch.from_numpy(arr["terminal"])}},
            "add_count": torch.from_numpy(arr["add_count"]), "invalid_range": torch.from_numpy(arr["invalid_range"]),
        }, batch_size=[])
        td.set_non_tensor("dataset_id", dataset_id)
        td.memmap_(dest / str(ckpt))
    return sorted(splits)


@pytest.fixture(scope="module")
def torchrl_rb(logs, tmp_path_factory):
    from torchrl.data.datasets import AtariDQNExperienceReplay as TorchRLAtari

    base, _ = logs
    troot = tmp_path_factory.mktemp("torchrl")
    _torchrl_dataset_dir(base / "Pong" / "2" / "replay_logs", troot / "Pong" / "2", "Pong/2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "This dataset is no longer available"
        return TorchRLAtari("Pong/2", 32, root=troot, download=False)


def _leaves(td):
    return {k: (v.dtype, tuple(v.shape[1:])) for k, v in td.items(True, True)}


def _metadata_form(td):
    items = td["metadata"]
    assert len(items) == td.batch_size[0]
    forms = {tuple(sorted((k, (v.dtype, tuple(v.shape)) if torch.is_tensor(v) else type(v)) for k, v in m.items()))
             for m in items}
    assert len(forms) == 1
    return dict(forms.pop())


def test_torchrl_layout_sample_has_torchrl_keys_dtypes_and_shapes(root, torchrl_rb):
    rb = AtariDQNExperienceReplay("Pong/2", 32, root=root, download=False, layout="torchrl")
    torch.manual_seed(2)
    ours, theirs = rb.sample(), torchrl_rb.sample()
    assert set(ours.keys(True)) == set(theirs.keys(True)) == set(TORCHRL_LEAVES) | {"metadata", "next"}
    assert _leaves(ours) == _leaves(theirs) == TORCHRL_LEAVES
    assert ours.batch_size == theirs.batch_size == (32,)
    assert _metadata_form(ours) == _metadata_form(theirs) == TORCHRL_METADATA


def _transitions(root):
    """Transition number of every row of the converted run (episode's ``first_index`` + step)."""
    plain = _reference(root)
    table = plain.episode_table()
    try:
        first_index = np.array([v for (v,) in table.values(["first_index"])])
    finally:
        table.close()
    td = plain[np.arange(len(plain))]
    last = td["step"].numpy() == plain.episode_bounds[1][td["episode"].numpy()] - 1
    return first_index[td["episode"].numpy()] + td["step"].numpy(), last


def _files(rec, transition):
    """Checkpoint file each transition is read from: the first (in time order) that holds it."""
    starts = [0] + [log.add_count for log in rec.logs[:-1]]
    return np.searchsorted(starts, transition, side="right") - 1


def _same_metadata(a, b):
    return (set(a) == set(b) == {"invalid_range", "add_count", "dataset_id"} and a["dataset_id"] == b["dataset_id"]
            and torch.equal(a["invalid_range"], b["invalid_range"]) and torch.equal(a["add_count"], b["add_count"]))


def test_torchrl_layout_rows_equal_torchrl_rows(root, logs, torchrl_rb):
    _, rec = logs
    c = rec.capacity
    ours = AtariDQNExperienceReplay("Pong/2", 8, root=root, download=False, layout="torchrl").storage
    g, last = _transitions(root)
    files = _files(rec, g)
    theirs_index = files * c + g % c  # TorchRL: one split of c rows per checkpoint file, in file order
    order = np.argsort(theirs_index, kind="stable")  # TorchRL returns a batch grouped by split: ask in order
    theirs = torchrl_rb.storage.get(torch.from_numpy(theirs_index[order]))
    mine = ours.get(torch.from_numpy(order))
    for key in TORCHRL_LEAVES.keys() - {"index", ("next", "observation")}:
        assert torch.equal(mine[key], theirs[key]), key
    assert all(_same_metadata(a, b) for a, b in zip(mine["metadata"], theirs["metadata"], strict=True))
    np.testing.assert_array_equal(mine["observation"].numpy(), rec.obs[g[order]])
    # TorchRL's next frame is the next row of the same file: comparable where that row holds the next transition
    g, files, last = g[order], files[order], last[order]
    stop = np.array([rec.logs[k].add_count for k in files])
    same_file = (g % c != c - 1) & ~last & ((files == len(rec.logs) - 1) | (g + 1 < stop))
    assert same_file.sum() > len(g) // 2
    sel = torch.from_numpy(np.flatnonzero(same_file))
    assert torch.equal(mine["next", "observation"][sel], theirs["next", "observation"][sel])


def test_torchrl_layout_metadata_follows_the_checkpoint_of_each_row(root, logs):
    _, rec = logs
    storage = AtariDQNExperienceReplay("Pong/2", 8, root=root, download=False, layout="torchrl").storage
    g, _ = _transitions(root)
    expected = _files(rec, g)
    got = [int(m["add_count"]) for m in storage.get(torch.arange(len(g)))["metadata"]]
    assert got == [rec.logs[k].stored for k in expected]
    assert len(set(got)) == len(rec.logs) == 3
    single = storage.get(5)
    assert single.batch_size == () and single["metadata"]["dataset_id"] == "Pong/2"
    assert int(single["metadata"]["add_count"]) == rec.logs[expected[5]].stored
    one_file = storage.get(torch.arange(3))["metadata"]  # rows of one file share one dict, as in TorchRL
    assert type(one_file) is dict and int(one_file["add_count"]) == rec.logs[expected[0]].stored


def test_torchrl_layout_of_an_older_conversion_carries_the_dataset_id(root, tmp_path, caplog):
    import shutil

    copy = tmp_path / "Pong" / "2"
    shutil.copytree(root / "Pong" / "2", copy)
    done = json.loads((copy / DONE_NAME).read_text())
    del done["checkpoint_files"]
    (copy / DONE_NAME).write_text(json.dumps(done))
    with caplog.at_level("WARNING"):
        storage = AtariDQNExperienceReplay("Pong/2", 8, root=tmp_path, download=False, layout="torchrl").storage
    assert "converted before checkpoint records were kept" in caplog.text
    assert storage.get(torch.arange(3))["metadata"] == {"dataset_id": "Pong/2"}


@pytest.mark.parametrize("records", [[], [{"first": 5}], "x",
                                     [{"first": 9, "add_count": 1, "invalid_range": [0]},
                                      {"first": 3, "add_count": 2, "invalid_range": [1]}]],
                         ids=["empty", "missing keys", "not a list", "decreasing"])
def test_damaged_checkpoint_records_are_a_format_error(root, tmp_path, records):
    import shutil

    copy = tmp_path / "Pong" / "2"
    shutil.copytree(root / "Pong" / "2", copy)
    done = json.loads((copy / DONE_NAME).read_text())
    done["checkpoint_files"] = records
    (copy / DONE_NAME).write_text(json.dumps(done))
    with pytest.raises(FormatError, match=r"atari_dqn.json: `checkpoint_files` must be a list of records .*"
                                          r"download='force'"):
        AtariDQNExperienceReplay("Pong/2", 8, root=tmp_path, download=False, layout="torchrl")


def test_torchrl_layout_keeps_its_metadata_after_preprocess_swap(root, tmp_path):
    rb = AtariDQNExperienceReplay("Pong/2", 16, root=root, download=False, layout="torchrl")
    rows = torch.arange(len(rb.storage))
    before = rb.storage.get(rows)
    rb.preprocess(_halve_frames, num_workers=0, dest=tmp_path / "half", swap=True)
    after = rb.storage.get(rows)
    assert torch.equal(after["observation"], before["observation"] // 2)
    assert [int(m["add_count"]) for m in after["metadata"]] == [int(m["add_count"]) for m in before["metadata"]]


def test_both_layouts_give_int32_actions_like_torchrl(root, torchrl_rb):
    torch.manual_seed(4)
    theirs = torchrl_rb.sample()["action"].dtype
    for layout in ("torchrl_ext", "torchrl"):
        rb = AtariDQNExperienceReplay("Pong/2", 16, root=root, download=False, layout=layout)
        assert rb.sample()["action"].dtype == theirs == torch.int32


def test_dataset_surface_of_torchrl_datasets(logs, tmp_path):
    from torchrl.data.datasets.common import BaseDatasetExperienceReplay

    rb = AtariDQNExperienceReplay("Pong/2", 4, root=tmp_path / "r", local_dir=logs[0])
    assert isinstance(rb, BaseDatasetExperienceReplay)
    assert rb.data_path == tmp_path / "r" / "Pong" / "2" and rb.data_path_root == tmp_path / "r"
    assert rb.data_path.is_dir()
    rb.delete()
    assert not rb.data_path.exists()
