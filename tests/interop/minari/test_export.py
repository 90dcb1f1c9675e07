"""``export_minari``: the datasets it writes open with ``minari.load_dataset`` and hold our values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from interop.minari.minari_maker import datasets_path, minari_episodes
from tensordict import TensorDict

from torchrl_ext import EpisodeView, ShardedStorage, ShardWriter
from torchrl_ext.interop.minari import export_minari, import_minari


def _episode(storage, e: int) -> TensorDict:
    first, length = storage.episode_bounds
    return storage[np.arange(int(first[e]), int(first[e] + length[e]))]


def _with_final(td: TensorDict, key: tuple[str, ...]) -> np.ndarray:
    return np.concatenate([td[key].numpy(), td[("next", *key)][-1:].numpy()])


@pytest.mark.parametrize("data_format", ["hdf5", "arrow"])
def test_round_trip_through_minari_keeps_every_value(minari_root, tmp_path, data_format):
    ours = import_minari(minari_root / "tests/dict-hdf5-v0", tmp_path / "ds", progress=False)
    out = tmp_path / "minari"
    path = export_minari(ours, "export/dict-v1", out_dir=out, data_format=data_format)
    assert path == out / "export/dict-v1"
    episodes, meta = minari_episodes(out, "export/dict-v1")
    assert len(episodes) == ours.num_episodes == 4
    for e, ep in enumerate(episodes):
        td = _episode(ours, e)
        assert np.array_equal(ep.observations["pos"], _with_final(td, ("observation", "pos")))
        assert np.array_equal(ep.observations["mode"], _with_final(td, ("observation", "mode")))
        assert np.array_equal(ep.observations["pair"][0], _with_final(td, ("observation", "pair", "0")))
        assert np.array_equal(ep.observations["pair"][1], _with_final(td, ("observation", "pair", "1")))
        assert np.array_equal(ep.actions, td["action"].numpy())
        assert np.array_equal(ep.rewards, td["next", "reward"].numpy()[:, 0])
        assert np.array_equal(ep.terminations, td["next", "terminated"].numpy()[:, 0])
        assert np.array_equal(ep.truncations, td["next", "truncated"].numpy()[:, 0])
        assert np.array_equal(ep.infos["counts"], _with_final(td, ("info", "counts")))
    assert [m["seed"] for m in meta] == [0, 1, 2, 3]
    with datasets_path(out):
        import minari

        dataset = minari.load_dataset("export/dict-v1")
        assert dataset.spec.env_spec.id == "TorchrlExtMinariDict-v0"  # kept from the import
        assert str(dataset.observation_space["pair"]) == "Tuple(Discrete(3), Box(0.0, 1.0, (2,), float64))"
        assert dataset.storage.metadata["author"] == {"torchrl-ext tests"}


def test_imported_frames_export_raw(minari_root, tmp_path):
    ours = import_minari(minari_root / "tests/pixels-arrow-v0", tmp_path / "ds", progress=False)
    export_minari(ours, "pixels-v0", out_dir=tmp_path / "minari")
    episodes, _ = minari_episodes(tmp_path / "minari", "pixels-v0")
    for e, ep in enumerate(episodes):
        assert np.array_equal(ep.observations, _with_final(_episode(ours, e), ("observation",)))
        assert ep.observations.dtype == np.uint8


def _generic_dataset(root):
    """Nested observations with no Minari origin: spaces are inferred from the columns."""
    with ShardWriter.create(root) as writer:
        for e, n in enumerate((3, 5)):
            t = torch.arange(n + 1)
            state = torch.stack([t.float(), torch.full((n + 1,), float(e))], 1)
            image = (t[:, None, None] * 10 + e).expand(n + 1, 4, 4).to(torch.uint8)
            done = torch.zeros(n, 1, dtype=torch.bool)
            done[-1] = True
            writer.add_episode(TensorDict({
                "observation": {"state": state[:-1], "image": image[:-1]},
                "action": torch.arange(n) % 3,
                "next": {"observation": {"state": state[1:], "image": image[1:]}, "reward": torch.ones(n, 1) * e,
                         "done": done},
            }, [n]), metadata={"level": e})
    return ShardedStorage(root)


def test_inferred_spaces_and_a_view(tmp_path):
    storage = _generic_dataset(tmp_path / "ds")
    view = EpisodeView(storage, where="level = 1")
    export_minari(view, "generic-v0", out_dir=tmp_path / "minari")
    (ep,), meta = minari_episodes(tmp_path / "minari", "generic-v0")
    assert np.array_equal(ep.observations["state"], np.stack([np.arange(6.0), np.ones(6)], 1).astype(np.float32))
    assert np.array_equal(ep.observations["image"][:, 0, 0], np.arange(6) * 10 + 1)
    assert np.array_equal(ep.actions, np.arange(5) % 3) and np.array_equal(ep.rewards, np.ones(5, np.float32))
    assert np.array_equal(ep.terminations, [False] * 4 + [True]) and not ep.truncations.any()
    assert "seed" not in meta[0]
    with datasets_path(tmp_path / "minari"):
        import minari

        spaces = minari.load_dataset("generic-v0").spec
    assert str(spaces.action_space) == "Discrete(3)"
    assert str(spaces.observation_space["image"]) == "Box(0, 255, (4, 4), uint8)"


def test_existing_dataset_is_never_overwritten(tmp_path):
    storage = _generic_dataset(tmp_path / "ds")
    export_minari(storage, "generic-v0", out_dir=tmp_path / "minari")
    with pytest.raises(ValueError, match=r"generic-v0 exists: Minari never overwrites a dataset"):
        export_minari(storage, "generic-v0", out_dir=tmp_path / "minari")


@pytest.mark.parametrize("bad", ["no version!", "a//b-v0"])
def test_malformed_dataset_id(tmp_path, bad):
    storage = _generic_dataset(tmp_path / "ds")
    with pytest.raises(ValueError, match=r"`dataset_id` must look like '\(namespace/\)name-v<N>'"):
        export_minari(storage, bad, out_dir=tmp_path / "minari")
    assert not (tmp_path / "minari").exists()
