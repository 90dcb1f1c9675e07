"""export_episodes: a view's episodes as a new dataset with their metadata and events, resumable."""

from __future__ import annotations

import numpy as np
import pytest

from torchrl_ext import EventIndex, ShardedStorage, ShardWriter
from torchrl_ext.export import export_episodes
from torchrl_ext.storages import EpisodeView
from torchrl_ext.synthetic import make_episode


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("export") / "ds"
    with ShardWriter.create(root, shard_rows=8, encodings={"observation": "zstd"}) as w:
        for e in range(6):
            w.add_episode(make_episode(e, 4 + e, (3,), final=e % 2 == 0),
                          metadata={"game": "pong" if e % 2 else "qbert", "Score": e},
                          events=[(1, "hit", float(e))])
    return root


def test_selected_episodes_rows_metadata_and_events_carry_over(root, tmp_path):
    view = EpisodeView(root, game="pong")
    out = export_episodes(view, tmp_path / "out", progress=False)
    assert out.num_episodes == 3 and len(out) == len(view)
    got, want = out.get(slice(None)), view.get(slice(None))
    for key in ("observation", "action", ("next", "reward"), ("next", "done"), ("next", "observation")):
        assert np.array_equal(got[key].numpy(), want[key].numpy()), key
    assert out.episode_table().values(["game", "Score"]) == [("pong", 1), ("pong", 3), ("pong", 5)]
    index = EventIndex.build(out.root, save=False)
    assert index.episode.tolist() == [0, 1, 2] and index.value.tolist() == [1.0, 3.0, 5.0]
    assert out.manifest.column(("observation",)).encoding == "zstd"


def test_fn_transforms_each_episode(root, tmp_path):
    def double(td):
        td["observation"] = td["observation"].float() * 2
        td["next", "observation"] = td["next", "observation"].float() * 2
        return td

    out = export_episodes(EpisodeView(root, Score__ge=4), tmp_path / "out", fn=double, progress=False)
    assert out.episode_table().values(["Score"]) == [(4,), (5,)]
    assert np.array_equal(out.get(slice(None))["observation"].numpy(),
                          EpisodeView(root, Score__ge=4).get(slice(None))["observation"].numpy() * 2.0)


def test_an_interrupted_export_resumes(root, tmp_path, monkeypatch):
    calls = []

    def flaky(td):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return td

    with pytest.raises(KeyboardInterrupt):
        export_episodes(root, tmp_path / "out", fn=flaky, shard_rows=4, progress=False)
    done = ShardedStorage(tmp_path / "out").num_episodes
    assert 0 < done < 6
    out = export_episodes(root, tmp_path / "out", fn=lambda td: td, shard_rows=4, progress=False)
    assert out.num_episodes == 6
    assert out.get(slice(None))["action"].tolist() == ShardedStorage(root).get(slice(None))["action"].tolist()


def test_dest_must_be_new(root, tmp_path):
    with pytest.raises(ValueError, match="is the source dataset"):
        export_episodes(root, root, progress=False)
    export_episodes(EpisodeView(root, game="pong"), tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="holds another dataset"):
        export_episodes(EpisodeView(root, game="qbert"), tmp_path / "out", progress=False)
