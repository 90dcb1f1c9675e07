"""import_torchrl_buffer: TorchRL buffers saved with rb.dumps or as memmap TensorDicts -> sharded datasets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from torchrl.data import LazyMemmapStorage, TensorDictReplayBuffer

from torchrl_ext import FormatError, ShardedStorage
from torchrl_ext.cli import main
from torchrl_ext.interop.torchrl_buffers import import_torchrl_buffer, read_buffer_dir
from torchrl_ext.writer import ShardWriter

FRAME = (4, 4, 3)


def _rows(ids: np.ndarray, steps: np.ndarray) -> TensorDict:
    """Rows of episodes ``ids`` at ``steps``: every leaf is a function of (episode, step)."""
    n = len(ids)
    e, t = torch.as_tensor(ids), torch.as_tensor(steps)
    pix = lambda s: ((10 * e + s)[:, None, None, None] % 256).expand(n, *FRAME).to(torch.uint8)  # noqa: E731
    state = lambda s: torch.stack([e.float(), s.float()], 1)  # noqa: E731
    lengths = torch.as_tensor([4 + i % 3 for i in ids.tolist()])
    done = (t == lengths - 1)[:, None]
    return TensorDict({
        "observation": {"pixels": pix(t), "state": state(t)},
        "action": (t % 3)[:, None].float(),
        "collector": {"traj_ids": e},
        "next": {"observation": {"pixels": pix(t + 1), "state": state(t + 1)},
                 "reward": t[:, None].float(), "done": done, "terminated": done, "truncated": torch.zeros_like(done)},
    }, [n])


def _interleaved(episodes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Two parallel collectors: their episodes' rows alternate, as a multi-env collector writes them."""
    lanes = [[(e, t) for e in episodes[i::2] for t in range(4 + e % 3)] for i in range(2)]
    rows = [r for pair in zip(*lanes) for r in pair] + lanes[0][len(lanes[1]):] + lanes[1][len(lanes[0]):]
    return np.array([r[0] for r in rows]), np.array([r[1] for r in rows])


def _dump(path, data: TensorDict, capacity: int) -> None:
    rb = TensorDictReplayBuffer(storage=LazyMemmapStorage(capacity), batch_size=4)
    rb.extend(data)
    rb.dumps(path)


def _check_episode(storage, e: int, source_id: int, steps: np.ndarray) -> None:
    first, length = storage.episode_bounds
    got = storage[np.arange(first[e], first[e] + length[e])]
    ref = _rows(np.full(len(steps), source_id), steps)
    for key in (("observation", "pixels"), ("observation", "state"), ("action",), ("next", "reward"),
                ("next", "done"), ("next", "observation", "state"), ("next", "observation", "pixels")):
        assert torch.equal(got[key], ref[key]), key


def test_interleaved_episodes_are_regrouped_with_values_and_metadata(tmp_path):
    ids, steps = _interleaved([0, 1, 2, 3, 4])
    _dump(tmp_path / "dump", _rows(ids, steps), capacity=64)
    storage = import_torchrl_buffer(tmp_path / "dump", tmp_path / "ds", progress=False)
    assert storage.num_episodes == 5 and len(storage) == len(ids)
    table = storage.episode_table()
    assert [table.metadata(e)["source_episode"] for e in range(5)] == [0, 1, 2, 3, 4]
    for e in range(5):
        _check_episode(storage, e, e, np.arange(4 + e % 3))
    m = storage.manifest
    assert set(m.next_from_row) == {("observation", "pixels"), ("observation", "state")}  # stored once
    assert {c.key: c.encoding for c in m.schema}[("observation", "pixels")] == "zstd"
    assert not any(c.key[0] in ("collector", "index") for c in m.schema)


def test_a_full_circular_buffer_starts_at_its_oldest_row(tmp_path):
    ids, steps = _interleaved(list(range(8)))  # 8 episodes, 38 rows into 30 slots: the oldest 8 rows are gone
    _dump(tmp_path / "dump", _rows(ids, steps), capacity=30)
    cols = read_buffer_dir(tmp_path / "dump")
    assert cols.columns[("collector", "traj_ids")][cols.order].tolist() == ids[-30:].tolist()
    storage = import_torchrl_buffer(tmp_path / "dump", tmp_path / "ds", progress=False)
    kept_ids, kept_steps = ids[-30:], steps[-30:]
    order = list(dict.fromkeys(kept_ids.tolist()))
    assert [storage.episode_table().metadata(e)["source_episode"] for e in range(storage.num_episodes)] == order
    for e, source in enumerate(order):
        _check_episode(storage, e, source, kept_steps[kept_ids == source])


def test_without_an_episode_key_episodes_end_at_done(tmp_path):
    ids = np.repeat([0, 1, 2], [4, 5, 6])
    steps = np.concatenate([np.arange(n) for n in (4, 5, 6)])
    data = _rows(ids, steps)
    del data["collector"]
    _dump(tmp_path / "dump", data, capacity=20)
    storage = import_torchrl_buffer(tmp_path / "dump", tmp_path / "ds", progress=False)
    assert storage.episode_bounds[1].tolist() == [4, 5, 6]
    _check_episode(storage, 2, 2, np.arange(6))


def test_next_values_that_are_not_the_next_row_are_kept_as_columns(tmp_path):
    ids, steps = _interleaved([0, 1, 2])
    data = _rows(ids, steps)
    data["next", "observation", "state"] += 0.5  # e.g. observations before a frame skip
    _dump(tmp_path / "dump", data, capacity=32)
    storage = import_torchrl_buffer(tmp_path / "dump", tmp_path / "ds", progress=False)
    assert storage.manifest.next_from_row == [("observation", "pixels")]
    got = storage[np.arange(len(storage))]
    order = np.argsort(ids, kind="stable")
    assert torch.equal(got["next", "observation", "state"], data["next", "observation", "state"][order])


def test_a_memmap_tensordict_directory_imports_every_row(tmp_path):
    ids = np.repeat([0, 1], [4, 5])
    steps = np.concatenate([np.arange(4), np.arange(5)])
    _rows(ids, steps).memmap(tmp_path / "scratch")
    storage = import_torchrl_buffer(tmp_path / "scratch", tmp_path / "ds", progress=False)
    assert storage.episode_bounds[1].tolist() == [4, 5]
    _check_episode(storage, 1, 1, np.arange(5))


def test_an_interrupted_import_resumes_to_the_same_dataset(tmp_path, monkeypatch):
    ids, steps = _interleaved(list(range(6)))
    _dump(tmp_path / "dump", _rows(ids, steps), capacity=64)
    import_torchrl_buffer(tmp_path / "dump", tmp_path / "ref", progress=False, shard_rows=6)
    real, calls = ShardWriter.add_episode, []

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ShardWriter, "add_episode", failing)
    with pytest.raises(KeyboardInterrupt):
        import_torchrl_buffer(tmp_path / "dump", tmp_path / "ds", progress=False, shard_rows=6)
    monkeypatch.setattr(ShardWriter, "add_episode", real)
    assert ShardedStorage(tmp_path / "ds").num_episodes == 3
    storage = import_torchrl_buffer(tmp_path / "dump", tmp_path / "ds", progress=False, shard_rows=6)
    ref = ShardedStorage(tmp_path / "ref")
    assert storage.num_episodes == 6 and len(storage) == len(ref)
    assert (storage[np.arange(len(ref))] == ref[np.arange(len(ref))]).all()


def test_cli_imports_and_reports(tmp_path, capsys):
    ids, steps = _interleaved([0, 1])
    _dump(tmp_path / "dump", _rows(ids, steps), capacity=16)
    assert main(["import", "torchrl", str(tmp_path / "dump"), "--root", str(tmp_path / "ds"), "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == f"{tmp_path / 'ds'}: 2 episodes, {len(ids)} rows, 1 shards"


def _meta(path):
    return json.loads((path / "meta.json").read_text())


@pytest.mark.parametrize(("damage", "match"), [
    (lambda d: (d / "action.memmap").write_bytes(b"\0" * 7), r"action.memmap: 7 bytes, expected \d+ for shape"),
    (lambda d: _edit(d, "action", {"dtype": "torch.complex64"}), r"dtype 'torch.complex64' is not one of"),
    (lambda d: _edit(d, "action", {"shape": [-1, 1]}), r"`shape` must be a list of at most 16 non-negative ints"),
    (lambda d: _edit(d, "action", {"shape": [3, 1]}), r"shape \[3, 1\] does not start with the buffer's \d+ rows"),
    (lambda d: _rename(d, "action", "../evil"), r"key '../evil' is not a plain name"),
    (lambda d: (d / "meta.json").write_text("[" * 100_000), r"meta.json: not valid JSON"),
    (lambda d: (d / "meta.json").write_bytes(b" " * (2 << 20)), r"more than 1048576 bytes of JSON"),
    (lambda d: _link_outside(d / "action.memmap"), r"action.memmap: resolves to .*, outside the dataset"),
])
def test_damaged_or_hostile_buffers_are_one_format_error(tmp_path, damage, match):
    ids, steps = _interleaved([0, 1])
    _dump(tmp_path / "dump", _rows(ids, steps), capacity=16)
    damage(tmp_path / "dump" / "storage")
    with pytest.raises(FormatError, match=match):
        import_torchrl_buffer(tmp_path / "dump", tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds").exists()


def test_non_tensor_entries_are_skipped_never_unpickled(tmp_path, caplog):
    ids, steps = _interleaved([0, 1])
    _dump(tmp_path / "dump", _rows(ids, steps), capacity=16)
    _edit(tmp_path / "dump" / "storage", "note", {"type": "NonTensorData"})
    cols = read_buffer_dir(tmp_path / "dump")
    assert cols.skipped == [("note",)] and "never loaded" in caplog.text


def test_a_directory_without_a_buffer_says_what_is_expected(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no meta.json here or in storage/; expected a TorchRL buffer"):
        import_torchrl_buffer(tmp_path / "empty", tmp_path / "ds", progress=False)


def _edit(directory, key, changes):
    meta = _meta(directory)
    meta[key] = {**meta.get(key, {}), **changes}
    (directory / "meta.json").write_text(json.dumps(meta))


def _rename(directory, key, new):
    meta = _meta(directory)
    meta[new] = meta.pop(key)
    (directory / "meta.json").write_text(json.dumps(meta))


def _link_outside(path):
    outside = path.parent.parent.parent / "outside.memmap"
    outside.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(outside)
