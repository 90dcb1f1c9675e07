"""generate(..., encodings=...): workers encode frames, the writer stores their chunks as they are."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from generate_test_envs import CountingEnv, FrameEnv

from torchrl_ext import ShardedStorage, read_manifest
from torchrl_ext.encodings import ChunkIndex, Video, Zstd, chunk_file_paths
from torchrl_ext.generate import WorkerFailed, generate
from torchrl_ext.generate.encode import FrameEncoder, unpack_episode

VIDEO = Video(codec="h264", gop=4, pix_fmt="yuv444p", crf=0)


def _rows(root) -> dict:
    s = ShardedStorage(root)
    td = s[np.arange(len(s))]
    return {k: td[k].numpy() for k in ["observation", ("next", "observation"), "action", "episode",
                                         ("next", "reward"), ("next", "done")]}


def _chunk_starts(root, key=("observation",)) -> list[int]:
    """First row (dataset-wide) of every chunk of ``key``, shard after shard."""
    m = read_manifest(root)
    out, base = [], 0
    for shard in m.shards:
        _, index = chunk_file_paths(root / shard.dir, key)
        parsed = ChunkIndex.from_bytes(index.read_bytes(), str(index))
        out += [base + parsed.chunk_start(c) for c in range(parsed.n_chunks)]
        base += shard.rows
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref") / "ds"
    generate(FrameEnv, None, root, num_episodes=6, max_steps=50, seed=3, progress=False)
    return _rows(root)


@pytest.mark.parametrize("num_workers", [1, 2])
def test_zstd_in_workers_is_lossless(tmp_path, reference, num_workers):
    root = tmp_path / "ds"
    generate(FrameEnv, None, root, num_episodes=6, num_workers=num_workers, max_steps=50, seed=3,
             shard_rows=16, encodings={"observation": Zstd(chunk_rows=4)}, progress=False)
    got = _rows(root)
    for k, want in reference.items():
        np.testing.assert_array_equal(got[k], want)
    # chunks were cut per episode by the workers: every episode starts a chunk
    st = ShardedStorage(root)
    first, _ = st.episode_bounds
    assert set(first.tolist()) <= set(_chunk_starts(root))
    assert read_manifest(root).column(("observation",)).encoding == "zstd"


def test_video_in_workers(tmp_path, reference):
    root = tmp_path / "ds"
    generate(FrameEnv, None, root, num_episodes=6, num_workers=2, max_steps=50, seed=3, shard_rows=32,
             encodings={"observation": VIDEO}, progress=False)
    got = _rows(root)
    for k in ("observation", ("next", "observation")):  # crf 0, 4:4:4: within rounding of the frames
        assert np.abs(got[k].astype(int) - reference[k]).max() <= 2
    for k in ("action", "episode", ("next", "reward"), ("next", "done")):
        np.testing.assert_array_equal(got[k], reference[k])
    first, _ = ShardedStorage(root).episode_bounds
    assert set(first.tolist()) <= set(_chunk_starts(root))


def test_resume_keeps_encoding_in_workers(tmp_path, reference):
    root = tmp_path / "ds"
    enc = {"observation": Zstd(chunk_rows=4)}
    generate(FrameEnv, None, root, num_episodes=2, max_steps=50, seed=3, shard_rows=16, encodings=enc,
             progress=False)
    stats = generate(FrameEnv, None, root, num_episodes=6, max_steps=50, seed=3, progress=False)
    assert (stats.skipped, stats.generated) == (2, 4)
    got = _rows(root)
    for k, want in reference.items():
        np.testing.assert_array_equal(got[k], want)


def test_dictionary_column_is_encoded_by_the_writer(tmp_path, reference):
    """A dictionary is trained on the first rows the writer sees, so those rows cannot come pre-encoded."""
    root = tmp_path / "ds"
    generate(FrameEnv, None, root, num_episodes=6, max_steps=50, seed=3,
             encodings={"observation": Zstd(chunk_rows=1, dictionary=True)}, progress=False)
    got = _rows(root)
    np.testing.assert_array_equal(got["observation"], reference["observation"])


def test_encoder_round_trip_values():
    enc = FrameEncoder({("observation",): (Zstd(chunk_rows=3), None)})
    enc = pickle.loads(pickle.dumps(enc))  # what a worker receives
    obs = np.arange(8 * 2, dtype=np.float32).reshape(8, 2)
    result = {"data": {"observation": obs[:-1].copy(), "action": np.zeros(7, np.int64),
                       "next": {"observation": obs[1:].copy()}}}
    enc(result)
    assert "observation" not in result["data"] and result["data"]["next"]["observation"].shape == (1, 2)
    chunks = result["encoded"][("observation",)]
    assert chunks.rows == (3, 3, 1) and chunks.codec == "zstd"
    td, encoded = unpack_episode(pickle.loads(pickle.dumps(result)))
    np.testing.assert_array_equal(td["next"]["observation"][-1], obs[-1])
    assert encoded[("observation",)].payloads == chunks.payloads


def test_encoding_that_does_not_fit_fails_without_retries(tmp_path):
    with pytest.raises(WorkerFailed, match=r"could not encode episode 0: `encodings` for \('observation',\).*"
                                           r"nothing is retried"):
        generate(CountingEnv, None, tmp_path / "ds", num_episodes=3, max_steps=50,
                 encodings={"observation": "video"}, progress=False)
