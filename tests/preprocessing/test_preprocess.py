"""preprocess(): values, carried-over episodes and events, resume, refusal of bad outputs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tensordict import TensorDict
from torchrl.data import RandomSampler, TensorDictReplayBuffer

from torchrl_ext import ShardedStorage, preprocess, preprocess_buffer
from torchrl_ext.synthetic import write_synthetic

OBS = (6, 6)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("src") / "ds"
    return write_synthetic(root, episodes=9, length=(3, 11), obs_shape=OBS, shard_rows=13, events_every=2)


# ---------------------------------------------------------------- functions under test
def to_float(td):
    td["observation"] = td["observation"].float() / 255
    td["next", "observation"] = td["next", "observation"].float() / 255
    return td


def resize4(td):
    for key in ("observation", ("next", "observation")):
        x = td[key].float().unsqueeze(1)
        td[key] = F.interpolate(x, size=(4, 4), mode="bilinear", align_corners=False).squeeze(1).round().to(torch.uint8)
    return td


def features_only(td):
    obs = td["observation"].float()
    return TensorDict({"feat": obs.mean((-1, -2), keepdim=True), "next": {"reward": td["next", "reward"] * 2}},
                      batch_size=td.batch_size)


def next_not_shifted(td):
    td["next", "observation"] = td["next", "observation"] // 2  # no longer the next row's observation
    return td


def row_dependent(td):
    td["observation"] = td["observation"] + (td["step"] % 3).to(torch.uint8)[:, None, None]
    return td


FNS = {
    "to_float": (to_float, [("observation",)]),
    "resize4": (resize4, [("observation",)]),
    "features_only": (features_only, []),
    "next_not_shifted": (next_not_shifted, []),
    "row_dependent": (row_dependent, []),
}


def expected(source: Path, fn) -> TensorDict:
    return fn(ShardedStorage(source)[:])


def assert_same(got: TensorDict, want: TensorDict) -> None:
    got_keys = set(got.keys(True, True)) - {"episode", "step"}
    want_keys = set(want.keys(True, True)) - {"episode", "step"}
    assert got_keys == want_keys
    for key in want_keys:
        assert got[key].dtype == want[key].dtype, key
        assert torch.equal(got[key], want[key]), key


# ---------------------------------------------------------------- values
@pytest.mark.parametrize("name", sorted(FNS))
def test_values_equal_fn_of_source_rows(source, tmp_path, name):
    fn, _ = FNS[name]
    out = preprocess(source, fn, tmp_path / "out", executor="serial", batch_rows=5, pbar=False)
    assert_same(out[:], expected(source, fn))


@pytest.mark.parametrize("name", sorted(FNS))
def test_next_key_stored_once_only_when_derivable(source, tmp_path, name):
    fn, keys = FNS[name]
    out = preprocess(source, fn, tmp_path / "out", executor="serial", batch_rows=5, pbar=False)
    assert out.manifest.next_from_row == keys


def test_next_from_row_false_stores_a_column_with_the_same_values(source, tmp_path):
    out = preprocess(source, to_float, tmp_path / "out", executor="serial", next_from_row=False, pbar=False)
    assert out.manifest.next_from_row == []
    assert_same(out[:], expected(source, to_float))


@pytest.mark.parametrize("executor", ["process", "thread"])
def test_parallel_executors_give_the_same_values(source, tmp_path, executor):
    out = preprocess(source, resize4, tmp_path / "out", executor=executor, num_workers=2, batch_rows=4, pbar=False)
    assert_same(out[:], expected(source, resize4))


@pytest.mark.slow  # spawned workers, each importing torch
def test_lambda_runs_in_worker_processes(source, tmp_path):
    fn = lambda td: td.set("observation", td["observation"] + 1)  # noqa: E731
    out = preprocess(source, fn, tmp_path / "out", num_workers=2, mp_start_method="spawn", pbar=False)
    assert_same(out[:], expected(source, fn))


def test_num_rows_rounds_down_to_whole_episodes(source, tmp_path):
    first, length = ShardedStorage(source).episode_bounds
    limit = int(first[4]) + 1  # one row into episode 4
    out = preprocess(source, to_float, tmp_path / "out", executor="serial", num_rows=limit, pbar=False)
    assert (len(out), out.num_episodes) == (int(first[4]), 4)
    assert_same(out[:], to_float(ShardedStorage(source)[: int(first[4])]))


# ---------------------------------------------------------------- episodes and events
def test_episode_table_and_metadata_carry_over(source, tmp_path):
    out = preprocess(source, to_float, tmp_path / "out", executor="serial", pbar=False)
    src = ShardedStorage(source)
    for a, b in zip(out.episode_bounds, src.episode_bounds):
        np.testing.assert_array_equal(a, b)
    got, want = out.episode_table(), src.episode_table()
    assert [got.metadata(e) for e in range(9)] == [want.metadata(e) for e in range(9)]


def test_event_logs_carry_over(source, tmp_path):
    out = preprocess(source, to_float, tmp_path / "out", executor="serial", pbar=False)
    src = ShardedStorage(source)
    assert out.manifest.event_logs == src.manifest.event_logs
    for rel in src.manifest.event_logs:
        with np.load(source / rel) as a, np.load(out.root / rel) as b:
            assert {k: a[k].tolist() for k in a.files} == {k: b[k].tolist() for k in b.files}


# ---------------------------------------------------------------- resume and completeness
class DieOnce:
    """to_float, but kills its worker process the first time it sees global ``row``.

    A flag file remembers the kill, so the resumed run goes through.
    """

    def __init__(self, source: Path, flag: Path, row: int) -> None:
        self.first = torch.as_tensor(ShardedStorage(source).episode_bounds[0])
        self.flag, self.row = flag, row

    def __call__(self, td):
        rows = self.first[td["episode"]] + td["step"]
        if not self.flag.exists() and bool((rows == self.row).any()):
            self.flag.touch()
            os._exit(3)
        return to_float(td)


def run_killed(source, dest, flag):
    fn = DieOnce(source, flag, row=30)  # row 30 lives in the third shard (13 rows per shard)
    with pytest.raises(RuntimeError, match="worker died"):
        preprocess(source, fn, dest, num_workers=1, batch_rows=4, pbar=False)
    return fn


def test_killed_run_leaves_no_openable_dataset(source, tmp_path):
    run_killed(source, tmp_path / "out", tmp_path / "flag")
    with pytest.raises(FileNotFoundError, match=r"an unfinished preprocess\(\) run, not a dataset yet; call preprocess\(\) again"):
        ShardedStorage(tmp_path / "out")


def test_resume_finishes_with_the_right_values(source, tmp_path):
    fn = run_killed(source, tmp_path / "out", tmp_path / "flag")
    out = preprocess(source, fn, tmp_path / "out", num_workers=1, batch_rows=4, pbar=False)
    assert_same(out[:], expected(source, to_float))


def test_resume_keeps_finished_shards(source, tmp_path):
    fn = run_killed(source, tmp_path / "out", tmp_path / "flag")
    files = [tmp_path / "out" / "shards" / s / "observation.memmap" for s in ("000000", "000001")]
    before = [f.stat().st_ino for f in files]
    preprocess(source, fn, tmp_path / "out", num_workers=1, batch_rows=4, pbar=False)
    assert [f.stat().st_ino for f in files] == before


def test_corrupt_finished_shard_is_recomputed(source, tmp_path):
    fn = run_killed(source, tmp_path / "out", tmp_path / "flag")
    f = tmp_path / "out" / "shards" / "000000" / "observation.memmap"
    data = bytearray(f.read_bytes())
    data[0] ^= 0xFF
    f.write_bytes(bytes(data))
    out = preprocess(source, fn, tmp_path / "out", num_workers=1, batch_rows=4, pbar=False)
    assert_same(out[:], expected(source, to_float))


def test_complete_dest_is_reused_without_running_fn(source, tmp_path):
    preprocess(source, to_float, tmp_path / "out", executor="serial", pbar=False)
    inode = (tmp_path / "out" / "shards" / "000001" / "observation.memmap").stat().st_ino
    preprocess(source, to_float, tmp_path / "out", executor="serial", pbar=False)
    assert (tmp_path / "out" / "shards" / "000001" / "observation.memmap").stat().st_ino == inode


def test_complete_dest_of_other_size_is_refused(source, tmp_path):
    preprocess(source, to_float, tmp_path / "out", executor="serial", num_rows=20, pbar=False)
    with pytest.raises(ValueError, match="overwrite=True"):
        preprocess(source, to_float, tmp_path / "out", executor="serial", pbar=False)


def test_overwrite_replaces_a_complete_dest(source, tmp_path):
    preprocess(source, to_float, tmp_path / "out", executor="serial", num_rows=20, pbar=False)
    out = preprocess(source, resize4, tmp_path / "out", executor="serial", overwrite=True, pbar=False)
    assert_same(out[:], expected(source, resize4))


def test_dest_with_foreign_files_is_refused(source, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a dataset"):
        preprocess(source, to_float, tmp_path / "out", executor="serial", overwrite=True, pbar=False)


# ---------------------------------------------------------------- bad outputs
def drop_a_row(td):
    return td[:-1] if td["step"].shape[0] > 1 else td


def later_float64(td):
    td = to_float(td)
    if int(td["episode"][0]) > 0:
        td["observation"] = td["observation"].double()
    return td


def later_reshaped(td):
    if int(td["episode"][0]) > 0:
        td["observation"] = td["observation"][:, :3]
    return td


def later_missing(td):
    return td.exclude("action") if int(td["episode"][0]) > 0 else td


def later_not_shifted(td):
    td = to_float(td)
    if int(td["episode"][0]) > 0:
        td["next", "observation"] = td["next", "observation"] + 1
    return td


def reorders(td):
    return td.flip(0)


@pytest.mark.parametrize("fn, error, match", [
    (drop_a_row, ValueError, r"`fn` output .* rows for a batch of"),
    (later_float64, TypeError, r"'observation' has dtype float64 .* first batch gave float32"),
    (later_reshaped, ValueError, r"'observation' has per-row shape \(3, 6\)"),
    (later_missing, ValueError, r"missing 'action'"),
    (later_not_shifted, ValueError, r"next_from_row=False"),
    (reorders, ValueError, r"'episode' differs from the source"),
])
def test_bad_fn_output_is_refused_naming_the_key(source, tmp_path, fn, error, match):
    with pytest.raises(error, match=match):
        preprocess(source, fn, tmp_path / "out", executor="serial", batch_rows=4, pbar=False)


def test_next_from_row_true_refuses_non_derivable_output(source, tmp_path):
    with pytest.raises(ValueError, match="next_from_row=True but"):
        preprocess(source, next_not_shifted, tmp_path / "out", executor="serial", next_from_row=True, pbar=False)


def test_failed_run_leaves_no_openable_dataset(source, tmp_path):
    with pytest.raises(ValueError, match="next_from_row=False"):
        preprocess(source, later_not_shifted, tmp_path / "out", executor="serial", batch_rows=4, pbar=False)
    with pytest.raises(FileNotFoundError, match=r"an unfinished preprocess\(\) run, not a dataset yet; call preprocess\(\) again"):
        ShardedStorage(tmp_path / "out")


# ---------------------------------------------------------------- replay buffer entry point
def test_preprocess_buffer_swaps_storage(source, tmp_path):
    rb = TensorDictReplayBuffer(storage=ShardedStorage(source), sampler=RandomSampler(), batch_size=16)
    new = preprocess_buffer(rb, to_float, num_workers=0, dest=tmp_path / "out", swap=True)
    assert rb.storage is new
    batch = rb.sample()
    assert batch["observation"].dtype == torch.float32
    assert torch.equal(batch["observation"], expected(source, to_float)["observation"][batch["index"]])


def test_preprocess_buffer_refuses_dim_other_than_0(source, tmp_path):
    rb = TensorDictReplayBuffer(storage=ShardedStorage(source))
    with pytest.raises(ValueError, match="`dim` must be 0"):
        preprocess_buffer(rb, to_float, dim=1, dest=tmp_path / "out")


# ---------------------------------------------------------------- a stateful-looking fn made row-wise
class FrameStack:
    """Stacks the last ``n`` observations of the same episode (first frame repeated at its start).

    Earlier frames are read from the source storage (which pickles by path), so
    the result does not depend on how rows are batched or split between workers.
    """

    def __init__(self, source: Path, n: int = 4) -> None:
        self.storage, self.n = ShardedStorage(source, cache_bytes=0), n

    def __call__(self, td):
        start = torch.as_tensor(self.storage.episode_bounds[0])[td["episode"]]
        rows = start + td["step"]
        idx = torch.maximum(rows[:, None] - torch.arange(self.n - 1, -1, -1), start[:, None])
        frames = self.storage[idx]["observation"]
        td["observation"] = frames
        td["next", "observation"] = torch.cat([frames[:, 1:], td["next", "observation"][:, None]], 1)
        return td


def naive_frame_stack(source: Path, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    s = ShardedStorage(source)
    first, _ = s.episode_bounds
    obs, nxt = [], []
    for g in range(len(s)):
        row = s[g]
        start = int(first[int(row["episode"])])
        frames = [s[max(g - k, start)]["observation"] for k in range(n - 1, -1, -1)]
        obs.append(torch.stack(frames))
        nxt.append(torch.stack(frames[1:] + [row["next", "observation"]]))
    return torch.stack(obs), torch.stack(nxt)


@pytest.mark.parametrize("batch_rows", [1, 5, 64])
def test_frame_stack_matches_a_row_by_row_reference(source, tmp_path, batch_rows):
    out = preprocess(source, FrameStack(source), tmp_path / "out", num_workers=2, batch_rows=batch_rows, pbar=False)
    obs, nxt = naive_frame_stack(source, 4)
    assert out.manifest.next_from_row == [("observation",)]
    got = out[:]
    assert torch.equal(got["observation"], obs)
    assert torch.equal(got["next", "observation"], nxt)


def test_preprocess_buffer_refuses_map_only_options(source, tmp_path):
    rb = TensorDictReplayBuffer(storage=ShardedStorage(source))
    with pytest.raises(ValueError, match=r"\['num_chunks'\] are TorchRL map options"):
        preprocess_buffer(rb, to_float, num_chunks=4, dest=tmp_path / "out")


def test_preprocess_buffer_without_swap_keeps_the_buffer_storage(source, tmp_path):
    storage = ShardedStorage(source)
    rb = TensorDictReplayBuffer(storage=storage)
    new = preprocess_buffer(rb, to_float, num_workers=0, num_frames=20, dest=tmp_path / "out")
    assert rb.storage is storage
    assert len(new) == int(storage.episode_bounds[0][np.searchsorted(storage.episode_bounds[0], 20, "right") - 1])
