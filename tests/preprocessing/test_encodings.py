"""preprocess keeps, changes or drops encodings; raw -> zstd -> raw is identical."""

from __future__ import annotations

import pytest

from torchrl_ext import ShardedStorage, preprocess
from torchrl_ext.encodings import Zstd
from torchrl_ext.synthetic import write_synthetic


def identity(td):
    return td


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return ShardedStorage(write_synthetic(tmp_path_factory.mktemp("src") / "ds", episodes=6, length=(5, 30),
                                          obs_shape=(6, 5), shard_rows=40, events_every=4))


def _encoding(storage, key=("observation",)):
    return storage.manifest.column(key).encoding


@pytest.mark.parametrize("spec", ["zstd", Zstd(chunk_rows=4, level=3), Zstd(chunk_rows=1, dictionary=True)])
def test_raw_to_zstd_to_raw_is_identical(raw, tmp_path, spec):
    enc = preprocess(raw, identity, tmp_path / "enc", num_workers=0, pbar=False, encodings={"observation": spec})
    assert _encoding(enc) == "zstd"
    kept = preprocess(enc, identity, tmp_path / "kept", num_workers=0, pbar=False)  # default: keep the source's
    assert _encoding(kept) == "zstd" and kept.manifest.column(("observation",)).options == \
        enc.manifest.column(("observation",)).options
    back = preprocess(kept, identity, tmp_path / "back", num_workers=0, pbar=False,
                      encodings={"observation": "raw"})
    assert _encoding(back) == "raw"
    for storage in (enc, kept, back):
        assert (storage[:] == raw[:]).all()
        storage.verify()


def test_process_workers_write_encoded_shards(raw, tmp_path):
    out = preprocess(raw, identity, tmp_path / "out", num_workers=2, pbar=False, encodings={"observation": "zstd"})
    assert (out[:] == raw[:]).all() and out.num_shards >= 2


def test_encodings_naming_a_missing_key_is_refused(raw, tmp_path):
    with pytest.raises(ValueError, match=r"`encodings` names \[\('pixels',\)\], which `fn` does not return"):
        preprocess(raw, identity, tmp_path / "out", num_workers=0, pbar=False, encodings={"pixels": "zstd"})
    assert not (tmp_path / "out" / "dataset.json").exists()


def double(td):
    td.set("observation", td["observation"] * 2)
    td.set(("next", "observation"), td["next", "observation"] * 2)
    return td


def test_where_processes_only_the_matching_episodes(raw, tmp_path):
    out = preprocess(raw, double, tmp_path / "pong", where="game = ?", params=("pong",), pbar=False)
    ids = raw.select_episodes("game = ?", ("pong",)).tolist()
    assert out.num_episodes == len(ids) > 0
    for new, old in enumerate(ids):
        assert (out.episode(new)["observation"] == 2 * raw.episode(old)["observation"]).all()
    assert [out.episode_table().metadata(e)["game"] for e in range(out.num_episodes)] == ["pong"] * len(ids)
