"""Pre-encoded chunks through the writer: stored byte for byte, decoded like the writer's own, grid checked."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from helpers import run_killed

from torchrl_ext import ShardedStorage, ShardWriter, read_manifest
from torchrl_ext.encodings import ChunkedColumnReader, ChunkedColumnWriter, ChunkIndex, EncodedChunks, Video, load_codec

pytest.importorskip("av")

SHAPE = (16, 16, 3)
GOP = 4
OPTIONS = Video(codec="h264", gop=GOP, pix_fmt="yuv420p", crf=10)


def frames(n: int, first: int = 0) -> np.ndarray:
    out = np.zeros((n, *SHAPE), np.uint8)
    out[..., 0] = ((np.arange(first, first + n) * 16) % 256)[:, None, None]
    return out


def chunks_of(rows: np.ndarray) -> EncodedChunks:
    codec = load_codec(OPTIONS, np.uint8, SHAPE)
    parts = [rows[i:i + GOP] for i in range(0, len(rows), GOP)]
    return EncodedChunks(tuple(codec.encode(p) for p in parts), tuple(len(p) for p in parts), np.uint8, SHAPE, "h264")


def episode(n: int) -> dict:
    done = np.zeros((n, 1), bool)
    done[-1] = True
    return {"action": np.arange(n, dtype=np.int64), "next": {"reward": np.zeros((n, 1), np.float32), "done": done}}


def test_encoded_chunk_is_stored_as_given(tmp_path):
    payloads = chunks_of(frames(8)).payloads
    with ChunkedColumnWriter(tmp_path, ("image",), np.uint8, SHAPE, OPTIONS) as w:
        w.append_encoded_chunk(payloads[0], GOP)
        w.append_encoded_chunk(payloads[1], GOP)
    assert (tmp_path / "image.chunks").read_bytes() == payloads[0] + payloads[1]


def decoded(root) -> np.ndarray:
    st = ShardedStorage(root)
    return st.get(torch.arange(len(st)))["image"].numpy()


def index_version(path) -> int:
    return path.read_bytes()[6]


def test_buffered_rows_are_cut_before_an_encoded_chunk(tmp_path):
    w = ChunkedColumnWriter(tmp_path, ("image",), np.uint8, SHAPE, OPTIONS)
    w.append(frames(1))
    w.append_encoded_chunk(chunks_of(frames(4, first=1)).payloads[0], GOP)
    w.append(frames(3, first=5))
    assert w.close().chunks == 3  # [1], [1..4], [5..7]
    assert index_version(tmp_path / "image.index") == 2
    reader = ChunkedColumnReader(tmp_path, ("image",), np.uint8, SHAPE, OPTIONS, 8)
    assert np.abs(reader.read(0, 8).astype(int) - frames(8)).max() <= 3
    assert np.array_equal(reader.gather(np.array([7, 0, 4, 1]), np.empty((4, *SHAPE), np.uint8)),
                          reader.read(0, 8)[[7, 0, 4, 1]])


def test_regular_grid_keeps_index_version_1(tmp_path):
    with ChunkedColumnWriter(tmp_path, ("image",), np.uint8, SHAPE, OPTIONS) as w:
        w.append_encoded(chunks_of(frames(6)))  # chunks of 4 and 2: only the last is short
    assert index_version(tmp_path / "image.index") == 1


def test_short_encoded_chunks_inside_a_shard(tmp_path):
    with ShardWriter.create(tmp_path / "ds", shard_rows=16, encodings={"image": OPTIONS}) as w:
        for e, n in enumerate((6, 3, 5)):  # chunks [4, 2], [3], [4, 1]
            w.add_episode(episode(n), encoded={"image": chunks_of(frames(n, first=10 * e))})
    want = np.concatenate([frames(6, 0), frames(3, 10), frames(5, 20)])
    assert np.abs(decoded(tmp_path / "ds").astype(int) - want).max() <= 3
    st = ShardedStorage(tmp_path / "ds")
    assert st.num_shards == 1 and index_version(tmp_path / "ds/shards/000000/image.index") == 2
    assert st.episode(1)["image"].shape[0] == 3


def test_episode_split_across_shards_at_a_chunk_end(tmp_path):
    with ShardWriter.create(tmp_path / "ds", shard_rows=6, encodings={"image": OPTIONS}) as w:
        w.add_episode(episode(10), encoded={"image": chunks_of(frames(10))})  # chunks 4, 4, 2
        w.add_episode(episode(2), encoded={"image": chunks_of(frames(2, first=10))})
    m = read_manifest(tmp_path / "ds")
    assert [s.rows for s in m.shards] == [4, 6, 2]  # 6 rows would cut the second chunk: the shard ends at 4
    assert np.abs(decoded(tmp_path / "ds").astype(int) - frames(12)).max() <= 3


def test_raw_rows_then_encoded_chunks_in_one_shard(tmp_path):
    with ShardWriter.create(tmp_path / "ds", shard_rows=8, encodings={"image": OPTIONS}) as w:
        w.add_episode({**episode(3), "image": frames(3)})
        w.add_episode(episode(4), encoded={"image": chunks_of(frames(4, first=3))})
        w.add_episode({**episode(1), "image": frames(1, first=7)})
    assert read_manifest(tmp_path / "ds").shards[0].rows == 8
    assert np.abs(decoded(tmp_path / "ds").astype(int) - frames(8)).max() <= 3


def test_chunk_larger_than_the_column_chunk_is_refused(tmp_path):
    big = load_codec(OPTIONS, np.uint8, SHAPE).encode(frames(5))
    with ShardWriter.create(tmp_path / "ds", shard_rows=8, encodings={"image": OPTIONS}) as w:
        with pytest.raises(ValueError, match=r"has a chunk of 5 rows, the column's chunks hold at most 4"):
            w.add_episode(episode(5), encoded={"image": EncodedChunks((big,), (5,), np.uint8, SHAPE, "h264")})
        assert w.num_episodes == 0


def test_shard_smaller_than_a_chunk_is_refused(tmp_path):
    with ShardWriter.create(tmp_path / "ds", shard_rows=3, encodings={"image": OPTIONS}) as w:
        with pytest.raises(ValueError, match=r"chunks of up to 4 rows do not fit shards of 3 rows"):
            w.add_episode(episode(4), encoded={"image": chunks_of(frames(4))})
        assert w.num_episodes == 0


def test_encoded_columns_with_different_boundaries_are_refused(tmp_path):
    enc = {"image": OPTIONS, "depth": OPTIONS}
    split = EncodedChunks(chunks_of(frames(2)).payloads + chunks_of(frames(4)).payloads[:1], (2, 4),
                          np.uint8, SHAPE, "h264")
    with ShardWriter.create(tmp_path / "ds", shard_rows=8, encodings=enc) as w:
        with pytest.raises(ValueError, match=r"must share their chunk boundaries"):
            w.add_episode(episode(6), encoded={"image": chunks_of(frames(6)), "depth": split})


def crash_after_two_episodes(root) -> None:
    """Commits shards holding episode 0 and the first 12 rows of episode 1, then ends the process at once."""
    w = ShardWriter.create(root, shard_rows=8, encodings={"image": OPTIONS})
    w.add_episode(episode(4), encoded={"image": chunks_of(frames(4))})
    w.add_episode(episode(14), encoded={"image": chunks_of(frames(14, first=4))})
    os._exit(0)  # the writer open: nothing closed, nothing flushed


def test_resume_copies_whole_chunks_as_stored(tmp_path):
    root = tmp_path / "ds"
    assert run_killed(0, crash_after_two_episodes, root) == 0  # a forked child, never stopped by a counted call
    first = (root / "shards/000000/image.chunks").read_bytes()
    assert read_manifest(root).num_episodes == 1 and read_manifest(root).shards[0].rows == 8
    with ShardWriter.open(root) as w:  # the shard's 4 committed rows are copied into a new shard
        w.add_episode(episode(14), encoded={"image": chunks_of(frames(14, first=4))})
    ep0 = chunks_of(frames(4)).payloads[0]
    assert first.startswith(ep0)
    m = read_manifest(root)
    assert m.num_episodes == 2 and (root / m.shards[0].dir / "image.chunks").read_bytes().startswith(ep0)
    assert np.abs(decoded(root).astype(int) - frames(18)).max() <= 3


@pytest.mark.parametrize("rows", [0, GOP + 1, True])
def test_encoded_chunk_rows_checked(tmp_path, rows):
    w = ChunkedColumnWriter(tmp_path, ("image",), np.uint8, SHAPE, OPTIONS)
    with pytest.raises(ValueError, match=r"`rows` must be an int in \[1, 4\]"):
        w.append_encoded_chunk(b"x", rows)
    w.abort()


def test_add_episode_with_encoded_frames_reads_back(tmp_path):
    with ShardWriter.create(tmp_path / "ds", shard_rows=8, encodings={"image": OPTIONS}) as w:
        for e, n in enumerate((12, 4, 8)):
            w.add_episode(episode(n), encoded={"image": chunks_of(frames(n, first=10 * e))})
    st = ShardedStorage(tmp_path / "ds")
    assert len(st) == 24 and st.num_shards == 3
    got = st.get(torch.arange(24))["image"].numpy()
    want = np.concatenate([frames(12, 0), frames(4, 10), frames(8, 20)])
    assert np.abs(got.astype(int) - want).max() <= 3


def test_encoded_and_encoder_rows_decode_alike(tmp_path):
    with ShardWriter.create(tmp_path / "ds", shard_rows=8, encodings={"image": OPTIONS}) as w:
        w.add_episode({**episode(8), "image": frames(8)})
        w.add_episode(episode(8), encoded={"image": chunks_of(frames(8))})
    got = ShardedStorage(tmp_path / "ds").get(torch.arange(16))["image"].numpy()
    assert np.array_equal(got[:8], got[8:])


def test_raw_column_refuses_encoded_chunks(tmp_path):
    with ShardWriter.create(tmp_path / "ds", shard_rows=8) as w:
        with pytest.raises(ValueError, match=r"the column is stored raw"):
            w.add_episode(episode(4), encoded={"image": chunks_of(frames(4))})


def test_key_in_both_is_refused(tmp_path):
    with ShardWriter.create(tmp_path / "ds", shard_rows=8, encodings={"image": OPTIONS}) as w:
        with pytest.raises(ValueError, match=r"given both in the episode and in `encoded`"):
            w.add_episode({**episode(4), "image": frames(4)}, encoded={"image": chunks_of(frames(4))})


def test_encoded_chunks_slice_on_boundaries():
    c = chunks_of(frames(12))
    assert c[4:12].rows == (4, 4) and c[4:12].payloads == c.payloads[1:]
    with pytest.raises(ValueError, match=r"rows \[0, 5\) do not start and end on chunk boundaries"):
        c[0:5]


def test_video_chunks_end_with_each_episode(tmp_path):
    with ShardWriter.create(tmp_path / "ds", shard_rows=16, encodings={"image": OPTIONS}) as w:
        for e, n in enumerate((6, 5)):  # encoded by the writer: chunks [4, 2] and [4, 1]
            w.add_episode({**episode(n), "image": frames(n, first=10 * e)})
    index = tmp_path / "ds/shards/000000/image.index"
    assert ChunkIndex.from_bytes(index.read_bytes(), "x").row_starts.tolist() == [0, 4, 6, 10, 11]
    assert np.abs(decoded(tmp_path / "ds").astype(int) - np.concatenate([frames(6), frames(5, first=10)])).max() <= 3
