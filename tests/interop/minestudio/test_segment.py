"""MineStudio segmentation imported: interactions frame by frame, rle masks, the walk, damage, resume."""

from __future__ import annotations

import json
import os
import pickle

import lmdb
import numpy as np
import pytest
import torch
from helpers import KILL_EXIT, built_once, run_killed
from interop.minestudio.ms_maker import segment_mask, segments_of, write_minestudio_dataset

from torchrl_ext import ShardedStorage
from torchrl_ext.format import FormatError
from torchrl_ext.interop.minestudio import (
    close_envs,
    import_minestudio,
    pick_interactions,
    rle_decode,
    rle_encode,
)
from torchrl_ext.sources.safe_pickle import UnsafePickleError

pytestmark = pytest.mark.slow  # segmentation import of a MineStudio fixture with masks


@pytest.fixture(scope="module")
def seg_dataset(tmp_path_factory):
    """``(directory, episodes, root, stats)``: 3 episodes with a ``segmentation/`` folder, imported."""
    def build(base):
        episodes = write_minestudio_dataset(base / "src", segment="segmentation")
        stats = import_minestudio(base / "src", base / "ds", progress=False)
        return base / "src", episodes, base / "ds", stats

    return built_once(tmp_path_factory, "minestudio_segment", build)


def naive_walk(frames):
    """``do_merge``'s backward walk with the first key where it picks, restated per frame."""
    keys, last = [], None
    for frame in reversed(frames):
        if frame and last not in frame:
            last = list(frame)[0]
        keys.append(last if frame else None)
    return keys[::-1]


def episode_rows(st, name):
    table = st.episode_table()
    e = next(i for i in range(st.num_episodes) if table.metadata(i)["name"] == name)
    first, length = st.episode_bounds
    return e, np.arange(int(first[e]), int(first[e] + length[e]))


def test_interactions_frame_by_frame(seg_dataset):
    _, episodes, root, _ = seg_dataset
    st = ShardedStorage(root)
    for name, e, n in episodes:
        ep, rows = episode_rows(st, name)
        frames = segments_of(e, n)
        keys = naive_walk(frames)
        vocab = json.loads(st.episode_table().metadata(ep)["segment_events"])
        got = {k: st.reader.gather_column(("segment", k), rows)
               for k in ("obj_id", "mask_bits", "event", "point", "frame_id", "frame_range", "interactions")}
        assert got["interactions"].tolist() == [len(f) for f in frames]
        for t, key in enumerate(keys):
            if key is None:
                assert (got["obj_id"][t], got["event"][t], got["frame_id"][t]) == (-1, -1, -1)
                assert not got["mask_bits"][t].any() and np.isnan(got["point"][t]).all()
                assert got["frame_range"][t].tolist() == [-1, -1]
                continue
            inter = frames[t][key]
            assert got["obj_id"][t] == inter["obj_id"]
            assert np.array_equal(np.unpackbits(got["mask_bits"][t], axis=-1), segment_mask(e, key[0], t)), (name, t)
            assert vocab[got["event"][t]] == inter["event"]
            want_point = [np.nan, np.nan] if inter["point"] is None else list(inter["point"])
            assert np.array_equal(got["point"][t], want_point, equal_nan=True)
            assert got["frame_id"][t] == inter["frame_id"] == t
            assert tuple(got["frame_range"][t]) == inter["frame_range"]


def test_stats_and_columns(seg_dataset):
    _, episodes, root, stats = seg_dataset
    frames = [f for _, e, n in episodes for f in segments_of(e, n)]
    assert stats.segment_frames == sum(1 for f in frames if f)
    assert stats.segment_picks == sum(len(f) > 1 for f in frames) > 0
    m = ShardedStorage(root).manifest
    cols = {c.key: c for c in m.schema}
    mask = cols[("segment", "mask_bits")]
    assert (mask.encoding, mask.dtype, mask.shape, dict(mask.options_dict)["chunk_rows"]) == (
        "zstd", np.uint8, (360, 80), 32)
    assert (cols[("segment", "obj_id")].dtype, cols[("segment", "point")].shape) == (np.int8, (2,))
    assert m.source["modalities"] == ["image", "action", "meta_info", "segment"] and m.source["chunk_size"] == 32
    on_disk = sum(p.stat().st_size for p in (root / "shards").glob("*/segment/mask_bits.*"))
    assert 0 < on_disk < 800 * 360 * 640 // 1000  # lossless, and far below the raw masks


def test_storage_get_returns_the_segment_columns(seg_dataset):
    _, episodes, root, _ = seg_dataset
    st = ShardedStorage(root)
    name, e, n = episodes[0]
    _, rows = episode_rows(st, name)
    td = st.get(torch.from_numpy(rows[:40]))
    assert td["segment", "mask_bits"].shape == (40, 360, 80)
    frames = segments_of(e, n)
    want = [-1 if k is None else frames[t][k]["obj_id"] for t, k in enumerate(naive_walk(frames))]
    assert td["segment", "obj_id"].tolist() == want[:40]


@pytest.mark.parametrize("frames, keys", [
    ([{"a": 0}, {"a": 0, "b": 0}, {}, {"b": 0}, {}], ["a", "b", None, "b", None]),  # b carries over the empty frame
    ([{"a": 0, "b": 0}, {"c": 0}], ["a", "c"]),
    ([{}, {}], [None, None]),
])
def test_the_walk_keeps_an_interaction_while_frames_hold_it(frames, keys):
    assert pick_interactions(frames) == keys == naive_walk(frames)


def minestudio_rle_decode(rle, shape):
    """``SegmentationKernelCallback.rle_decode`` as written: one slice per run."""
    s = rle.split()
    starts, lengths = [np.asarray(x, dtype=int) for x in (s[0:][::2], s[1:][::2])]
    starts -= 1
    out = np.zeros(shape[0] * shape[1], np.uint8)
    for lo, hi in zip(starts, starts + lengths):
        out[lo:hi] = 1
    return out.reshape(shape)


@pytest.mark.parametrize("rle", ["", "1 1", "5 3 2 2", "10 4 12 5", "13 10", "20 1", "7 0 1 12"])
def test_rle_decode_matches_minestudio_overlaps_and_overruns_too(rle):
    assert np.array_equal(rle_decode(rle, "t", (3, 4)), minestudio_rle_decode(rle, (3, 4)))


@pytest.mark.parametrize("seed", range(3))
def test_rle_round_trip(seed):
    mask = (np.random.default_rng(seed).random((360, 640)) < 0.3).astype(np.uint8)
    assert np.array_equal(rle_decode(rle_encode(mask), "t"), mask)
    assert np.array_equal(minestudio_rle_decode(rle_encode(mask), (360, 640)), mask)


@pytest.mark.parametrize("rle, match", [
    ("1 2 3", r"rle_mask holds 3 numbers, expected start/length pairs"),
    ("1 x", r"rle_mask is not a list of integers"),
    ("0 4", r"rle_mask has a start below 1 or a negative length"),
    ("2 -1", r"rle_mask has a start below 1 or a negative length"),
])
def test_malformed_rle_is_a_format_error(rle, match):
    with pytest.raises(FormatError, match=match):
        rle_decode(rle, "t", (3, 4))


def _put(src, key, value):
    close_envs()
    env = lmdb.open(str(src / "segment" / "part-1"), map_size=1 << 30)
    with env.begin(write=True) as txn:
        txn.put(key, value)
    env.close()


def test_without_segment_folder_nothing_changes(imported):
    st = ShardedStorage(imported[0])
    assert not [c.key for c in st.manifest.schema if c.key[0] == "segment"]
    assert "chunk_size" not in st.manifest.source and "segment_events" not in st.episode_table().metadata(0)


def test_segment_asked_for_but_missing(tmp_path):
    src = tmp_path / "ms"
    write_minestudio_dataset(src, lengths=(64,), meta=False, events=False)
    with pytest.raises(FormatError, match=r"modality 'segment' is missing: expected a folder named one of"):
        import_minestudio(src, tmp_path / "ds", modalities=["image", "action", "segment"], progress=False)


def test_malicious_pickle_in_a_segment_chunk_is_refused_unrun(tmp_path):
    src = tmp_path / "ms"
    write_minestudio_dataset(src, lengths=(64,), meta=False, events=False, segment="segment")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    _put(src, b"(0, 32)", pickle.dumps([{(0, "e"): Evil()}] * 32))
    with pytest.raises(UnsafePickleError, match=r"segment chunk 1: the pickle asks for posix.system"):
        import_minestudio(src, tmp_path / "ds", progress=False)
    assert not marker.exists()


@pytest.mark.parametrize("value, match", [
    ({"frame": 1}, r"segment chunk 0: expected a list of per-frame dicts, found dict"),
    ([{}] * 31, r"the segment modality holds 63 frames, expected 64"),
    ([{(0, "e"): {"obj_id": 1}}] * 32, r"segment chunk 0 frame 0 \(0, 'e'\): an interaction must be a dict with"),
    ([{(0, "e"): {"obj_id": 1, "rle_mask": "1 x", "event": "", "point": None, "frame_id": 0,
                  "frame_range": (0, 1)}}] * 32, r"frame 0 \(0, 'e'\): rle_mask is not a list of integers"),
    ([{(0, "e"): {"obj_id": "1", "rle_mask": "", "event": "", "point": None, "frame_id": 0,
                  "frame_range": (0, 1)}}] * 32, r"obj_id must be an int, found '1'"),
])
def test_damaged_segment_chunks_are_format_errors(tmp_path, value, match):
    src = tmp_path / "ms"
    write_minestudio_dataset(src, lengths=(64,), meta=False, events=False, segment="segment")
    _put(src, b"(0, 0)", pickle.dumps(value))
    with pytest.raises(FormatError, match=match):
        import_minestudio(src, tmp_path / "ds", progress=False)


def test_truncated_segment_lmdb_is_a_clear_error(tmp_path):
    src = tmp_path / "ms"
    write_minestudio_dataset(src, lengths=(64,), meta=False, events=False, segment="segment")
    data = src / "segment" / "part-1" / "data.mdb"
    with open(data, "r+b") as f:
        f.truncate(data.stat().st_size // 2)
    with pytest.raises(FormatError, match=r"segment/part-1/data.mdb: LMDB file is truncated: .*; copy the dataset"):
        import_minestudio(src, tmp_path / "ds", progress=False)




@pytest.mark.slow  # a kill trial; tests/interop/minestudio/test_import.py keeps one in the quick run
def test_killed_import_with_segmentation_resumes_to_the_same_dataset(seg_dataset, tmp_path):
    src, _, ref, _ = seg_dataset
    root = tmp_path / "ds"
    # stopped at its 170th fsync; shards of 128 rows, so episodes straddle shards and a resume copies a prefix
    assert run_killed(170, import_minestudio, src, root, progress=False, shard_rows=128, hooked=("fsync",)) == KILL_EXIT
    kept = ShardedStorage(root).num_episodes
    stats = import_minestudio(src, root, progress=False)
    # the kill left a committed prefix of 1 or 2 of the 3 episodes; the rerun keeps exactly it and adds the rest
    # (fails if the kill committed nothing or everything, or if the rerun re-imports or drops a kept episode)
    assert 1 <= stats.kept == kept < 3 and stats.kept + stats.episodes == 3
    a, b = ShardedStorage(ref), ShardedStorage(root)
    rows = np.arange(len(a))
    assert len(a) == len(b) == 800 and [c.key for c in a.manifest.schema] == [c.key for c in b.manifest.schema]
    for c in a.manifest.schema:  # points hold NaN: compared with equal_nan
        x, y = a.reader.gather_column(c.key, rows), b.reader.gather_column(c.key, rows)
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), c.key
    ta, tb = a.episode_table(), b.episode_table()
    assert [ta.metadata(e) for e in range(3)] == [tb.metadata(e) for e in range(3)]
