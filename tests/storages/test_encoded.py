"""Encoded columns end to end: written by ShardWriter, read by ShardedStorage, equal to raw."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from torch.utils.data import DataLoader

from torchrl_ext import FormatError, ShardedStorage, ShardWriter
from torchrl_ext.datasets import FrameStackStorage
from torchrl_ext.encodings import Video, Zstd, psnr
from torchrl_ext.format import read_manifest
from torchrl_ext.storages import RowDataset, collate_rows


def _frames(ep: int, length: int, shape: tuple[int, ...]) -> np.ndarray:
    """Smooth moving gradients (compressible, video-friendly), different per episode and step."""
    t = np.arange(length)[:, None, None]
    y = np.arange(shape[0])[None, :, None]
    x = np.arange(shape[1])[None, None, :]
    base = (x * 3 + y * 2 + t * 5 + ep * 17) % 256
    frames = base.astype(np.uint8)
    if len(shape) == 3:
        frames = np.stack([frames, 255 - frames, (frames // 2 + 40).astype(np.uint8)], axis=-1)
    return frames


def _episode(ep: int, length: int, shape: tuple[int, ...], final: bool) -> TensorDict:
    obs = torch.from_numpy(_frames(ep, length + 1, shape))
    done = torch.zeros(length, 1, dtype=torch.bool)
    done[-1] = True
    data = {
        "observation": obs[:length],
        "action": torch.arange(length, dtype=torch.int64) % 4 + ep,
        "next": {"reward": torch.full((length, 1), float(ep)), "done": done},
    }
    if final:
        data["next"]["observation"] = obs[1:]
    return TensorDict(data, [length])


LENGTHS = [23, 1, 40, 17, 9, 31]


def _write(root, encodings=None, shape=(12, 10), shard_rows=37):
    with ShardWriter.create(root, shard_rows=shard_rows, encodings=encodings) as w:
        for ep, n in enumerate(LENGTHS):
            w.add_episode(_episode(ep, n, shape, final=ep % 2 == 0), metadata={"ep": ep})
    return root


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("enc")
    return (ShardedStorage(_write(d / "raw")),
            ShardedStorage(_write(d / "zstd", {"observation": Zstd(chunk_rows=8)})))


@pytest.mark.parametrize("index", [
    np.arange(0, 121), np.array([120, 0, 5, 5, 64, 22, 23, 24, 99]), slice(30, 90),
    np.random.default_rng(0).integers(0, 121, (4, 16)),
])
def test_zstd_rows_equal_raw_bit_exact(pair, index):
    raw, enc = pair
    a, b = raw[index], enc[index]
    for key in a.keys(include_nested=True, leaves_only=True):
        assert torch.equal(a[key], b[key]), key


def test_zstd_is_smaller_and_recorded(pair):
    raw, enc = pair
    col = enc.manifest.column(("observation",))
    assert (col.encoding, col.options_dict["chunk_rows"]) == ("zstd", 8)
    raw_bytes = sum(s.bytes for s in raw.manifest.shards)
    enc_bytes = sum(s.bytes for s in enc.manifest.shards)
    assert enc_bytes < raw_bytes / 2


def test_zstd_final_observation_and_zeros(pair):
    raw, enc = pair
    first, length = enc.episode_bounds
    last = first + length - 1
    batch = enc[last]
    expected = [_frames(ep, n + 1, (12, 10))[n] if ep % 2 == 0 else np.zeros((12, 10), np.uint8)
                for ep, n in enumerate(LENGTHS)]
    assert np.array_equal(batch["next", "observation"].numpy(), np.stack(expected))


def test_frame_stack_over_zstd_equals_raw(tmp_path, pair):
    raw, enc = pair
    a = FrameStackStorage(raw.root, stack=4)
    b = FrameStackStorage(enc.root, stack=4)
    idx = np.array([0, 1, 2, 3, 24, 25, 60, 61, 62, 120])
    assert torch.equal(a[idx]["observation"], b[idx]["observation"])
    assert torch.equal(a[idx]["next", "observation"], b[idx]["next", "observation"])


def test_verify_and_refresh_on_encoded(tmp_path):
    root = _write(tmp_path / "ds", {"observation": "zstd"})
    storage = ShardedStorage(root)
    storage.verify()
    with ShardWriter.open(root) as w:
        w.add_episode(_episode(9, 12, (12, 10), final=True))
    assert storage.refresh() == 12
    assert np.array_equal(storage[-1]["next", "observation"].numpy(), _frames(9, 13, (12, 10))[12])


def test_corrupt_chunk_names_shard_column_and_chunk(tmp_path):
    root = _write(tmp_path / "ds", {"observation": Zstd(chunk_rows=8)})
    chunks = root / "shards" / "000000" / "observation.chunks"
    data = bytearray(chunks.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunks.write_bytes(bytes(data))
    storage = ShardedStorage(root)
    with pytest.raises(FormatError, match=r"000000.*observation.*chunk"):
        storage[np.arange(0, 37)]
    with pytest.raises(FormatError, match="checksum"):
        storage.verify()


def test_first_read_verification_refuses_a_corrupt_shard_before_serving_it(tmp_path):
    root = _write(tmp_path / "ds")
    col = root / "shards" / "000001" / "action.memmap"
    data = bytearray(col.read_bytes())
    data[3] ^= 0x01
    col.write_bytes(bytes(data))
    storage = ShardedStorage(root, verify="first-read")
    assert storage[0]["action"].item() == 0  # shard 0 is intact
    with pytest.raises(FormatError, match=r"000001: checksum"):
        storage[40]


def test_final_files_are_covered_by_the_checksum(tmp_path):
    root = _write(tmp_path / "ds")
    final = root / "shards" / "000000" / "final" / "observation.memmap"
    data = bytearray(final.read_bytes())
    data[0] ^= 0x10
    final.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="checksum"):
        ShardedStorage(root).verify()


@pytest.mark.slow  # spawned workers, each importing torch
def test_dataloader_workers_read_encoded_columns(pair):
    raw, enc = pair
    loader = DataLoader(RowDataset(enc), batch_size=16, num_workers=2, collate_fn=collate_rows)
    got = torch.cat([b["observation"] for b in loader])
    assert torch.equal(got, raw[:]["observation"])


def test_pickle_round_trip_keeps_encoding(pair):
    _, enc = pair
    copy = pickle.loads(pickle.dumps(enc))
    assert torch.equal(copy[[3, 70]]["observation"], enc[[3, 70]]["observation"])


def test_video_column_frames_in_order_within_psnr(tmp_path):
    shape = (32, 32, 3)
    root = _write(tmp_path / "ds", {"observation": Video(gop=8, crf=18)}, shape=shape)
    storage = ShardedStorage(root)
    got = storage[:]["observation"].numpy()
    expected = np.concatenate([_frames(ep, n + 1, shape)[:n] for ep, n in enumerate(LENGTHS)])
    assert got.shape == expected.shape
    assert psnr(expected, got) > 35.0
    # order is exact: each decoded frame is closest to its own source frame
    err = np.abs(got[1:].astype(int) - expected[1:].astype(int)).mean(axis=(1, 2, 3))
    shifted = np.abs(got[1:].astype(int) - expected[:-1].astype(int)).mean(axis=(1, 2, 3))
    assert (err < shifted).mean() > 0.95


def test_mixed_encodings_in_one_dataset(tmp_path):
    root = _write(tmp_path / "ds", {"observation": "zstd", "action": Zstd(chunk_rows=4)})
    m = read_manifest(root)
    assert {c.key: c.encoding for c in m.schema}[("action",)] == "zstd"
    storage = ShardedStorage(root)
    expected = np.concatenate([np.arange(n) % 4 + ep for ep, n in enumerate(LENGTHS)])
    assert storage[:]["action"].numpy().tolist() == expected.tolist()


@pytest.mark.parametrize("spec, match", [
    ({"observation": "lz77"}, "unknown encoding 'lz77'"),
    ({"nope": "zstd"}, r"`encodings` names \[\('nope',\)\]"),
    ({"action": "video"}, "`encodings` for \\('action',\\): encoding 'video' needs uint8 frames"),
])
def test_bad_encodings_are_refused(tmp_path, spec, match):
    with pytest.raises(ValueError, match=match):
        _write(tmp_path / "ds", spec)


def test_dictionary_mode_round_trip_and_stored_dictionary(tmp_path, pair):
    raw, _ = pair
    root = _write(tmp_path / "ds", {"observation": Zstd(chunk_rows=1, dictionary=True)})
    storage = ShardedStorage(root)
    opts = storage.manifest.column(("observation",)).options_dict
    assert opts["dictionary_file"] == "dicts/observation.zdict" and (root / opts["dictionary_file"]).is_file()
    assert torch.equal(storage[:]["observation"], raw[:]["observation"])
    with ShardWriter.open(root) as w:  # appending reuses the stored dictionary
        w.add_episode(_episode(7, 5, (12, 10), final=True))
    assert np.array_equal(ShardedStorage(root)[-5:]["observation"].numpy(), _frames(7, 6, (12, 10))[:5])


def test_corrupt_dictionary_is_refused(tmp_path):
    root = _write(tmp_path / "ds", {"observation": Zstd(chunk_rows=1, dictionary=True)})
    path = root / "dicts" / "observation.zdict"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=r"observation.zdict: checksum .* the dictionary is corrupt"):
        ShardedStorage(root)


def test_event_windows_over_zstd_equal_raw(tmp_path):
    from torchrl_ext import EventIndex, EventWindowDataset
    from torchrl_ext.synthetic import write_synthetic

    args = dict(episodes=6, length=(20, 40), obs_shape=(6, 5), shard_rows=37, events_every=5)
    raw = write_synthetic(tmp_path / "raw", **args)
    enc = write_synthetic(tmp_path / "enc", **args, encodings={"observation": Zstd(chunk_rows=8)})
    for root in (raw, enc):
        EventIndex.build(root)
    a = EventWindowDataset(raw, event_regex="tick:.*", win_len=12, bias=3)
    b = EventWindowDataset(enc, event_regex="tick:.*", win_len=12, bias=3)
    assert len(a) == len(b) > 0

    def same(x, y):
        if isinstance(x, dict):
            return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
        return torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y

    assert all(same(a[i], b[i]) for i in range(len(a)))
    assert torch.equal(a[0]["observation"], torch.as_tensor(b[0]["observation"]))
