"""An interrupted Minari import resumes after its committed episodes and ends equal to an uninterrupted one."""

from __future__ import annotations

import numpy as np
import pytest

from torchrl_ext import ShardedStorage, ShardWriter
from torchrl_ext.interop.minari import import_minari


class _Stop(RuntimeError):
    pass


def _fail_after(monkeypatch, episodes: int) -> None:
    """The writer refuses every episode after the first ``episodes`` of this run."""
    real = ShardWriter.add_episode
    calls = {"n": 0}

    def add_episode(self, td, metadata=None, events=None, **kw):
        if calls["n"] == episodes:
            raise _Stop(f"stopped after {episodes} episodes")
        calls["n"] += 1
        return real(self, td, metadata, events, **kw)

    monkeypatch.setattr(ShardWriter, "add_episode", add_episode)


def _everything(storage: ShardedStorage) -> dict:
    td = storage[np.arange(len(storage))]
    return {k: td[k].numpy() for k in td.keys(include_nested=True, leaves_only=True)}


@pytest.mark.parametrize("data_format", ["hdf5", "arrow"])
def test_rerun_continues_after_the_committed_episodes(minari_root, tmp_path, monkeypatch, data_format):
    source = minari_root / f"tests/dict-{data_format}-v0"
    whole = import_minari(source, tmp_path / "whole", progress=False)
    with monkeypatch.context() as m:
        _fail_after(m, 2)
        with pytest.raises(_Stop, match="stopped after 2 episodes"):
            import_minari(source, tmp_path / "ds", shard_rows=8, progress=False)
    assert ShardedStorage(tmp_path / "ds").num_episodes == 2  # both episodes before the failure were committed
    resumed = import_minari(source, tmp_path / "ds", shard_rows=8, progress=False)
    assert resumed.num_episodes == 4 and len(resumed) == len(whole)
    a, b = _everything(whole), _everything(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    table = resumed.episode_table()
    try:
        assert table.values(("episode_id",)) == [(0,), (1,), (2,), (3,)]
    finally:
        table.close()


def test_a_failure_at_the_first_episode_leaves_no_directory(minari_root, tmp_path, monkeypatch):
    _fail_after(monkeypatch, 0)
    with pytest.raises(_Stop, match="stopped after 0 episodes"):
        import_minari(minari_root / "tests/dict-hdf5-v0", tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds").exists()


def test_a_root_holding_another_import_is_refused(minari_root, tmp_path):
    import_minari(minari_root / "tests/dict-hdf5-v0", tmp_path / "ds", progress=False)
    with pytest.raises(ValueError, match=r"holds a dataset imported from .*dict-hdf5-v0.*choose a new `root`"):
        import_minari(minari_root / "tests/pixels-hdf5-v0", tmp_path / "ds", progress=False)


def test_a_complete_import_run_again_changes_nothing(minari_root, tmp_path):
    first = _everything(import_minari(minari_root / "tests/pixels-arrow-v0", tmp_path / "ds", progress=False))
    again = import_minari(minari_root / "tests/pixels-arrow-v0", tmp_path / "ds", progress=False)
    assert again.num_episodes == 4
    assert all(np.array_equal(first[k], v) for k, v in _everything(again).items())
