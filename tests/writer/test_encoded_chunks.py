"""Pre-encoded chunks through the writer: stored byte for byte, decoded like the writer's own, grid checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchrl_ext import ShardedStorage, ShardWriter
from torchrl_ext.encodings import ChunkedColumnWriter, EncodedChunks, Video, load_codec

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


def test_encoded_chunk_must_start_on_a_boundary(tmp_path):
    w = ChunkedColumnWriter(tmp_path, ("image",), np.uint8, SHAPE, OPTIONS)
    w.append(frames(1))
    with pytest.raises(ValueError, match=r"1 rows appended since the last chunk boundary"):
        w.append_encoded_chunk(b"x", GOP)
    w.abort()


def test_short_encoded_chunk_is_the_last(tmp_path):
    w = ChunkedColumnWriter(tmp_path, ("image",), np.uint8, SHAPE, OPTIONS)
    w.append_encoded_chunk(chunks_of(frames(2)).payloads[0], 2)
    with pytest.raises(ValueError, match=r"so it is the last chunk of this shard"):
        w.append(frames(1))
    assert w.close().rows == 2


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


def test_shard_rows_not_a_multiple_of_the_chunk_is_refused(tmp_path):
    with ShardWriter.create(tmp_path / "ds", shard_rows=6, encodings={"image": OPTIONS}) as w:
        with pytest.raises(ValueError, match=r"need shard_rows a multiple of 4 .* got shard_rows=6"):
            w.add_episode(episode(8), encoded={"image": chunks_of(frames(8))})
        assert w.num_episodes == 0


def test_episode_off_the_chunk_grid_is_refused(tmp_path):
    with ShardWriter.create(tmp_path / "ds", shard_rows=8, encodings={"image": OPTIONS}) as w:
        w.add_episode({**episode(3), "image": frames(3)})
        with pytest.raises(ValueError, match=r"3 rows already in the shard"):
            w.add_episode(episode(4), encoded={"image": chunks_of(frames(4))})
        assert w.num_episodes == 1


def test_partial_chunks_are_refused(tmp_path):
    with ShardWriter.create(tmp_path / "ds", shard_rows=8, encodings={"image": OPTIONS}) as w:
        with pytest.raises(ValueError, match=r"has chunks of \[2, 4\] rows; every chunk must hold the column's 4"):
            w.add_episode(episode(6), encoded={"image": chunks_of(frames(6))})


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
