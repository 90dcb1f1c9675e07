"""Gather and read against a naive reference (numpy fancy indexing), from several threads too."""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from torchrl_ext.encodings import ChunkedColumnReader, ChunkedColumnWriter, DecodedChunkCache, Zstd


@st.composite
def _cases(draw):
    rows = draw(st.integers(1, 60))
    chunk_rows = draw(st.integers(1, 20))
    pieces = draw(st.lists(st.integers(0, 25), max_size=5))
    idx = draw(st.lists(st.integers(0, rows - 1), max_size=40))
    start = draw(st.integers(0, rows))
    stop = draw(st.integers(start, rows))
    cache = draw(st.sampled_from([None, 0, 300, 1 << 20]))
    threads = draw(st.sampled_from([1, 3]))
    return rows, chunk_rows, pieces, np.array(idx, dtype=np.int64), start, stop, cache, threads


@settings(max_examples=60, deadline=None)
@given(_cases())
def test_gather_and_read_match_reference(case):
    rows, chunk_rows, pieces, idx, start, stop, cache, threads = case
    values = np.random.default_rng(rows).integers(0, 1000, size=(rows, 3)).astype(np.int32)
    options = Zstd(chunk_rows=chunk_rows)
    with tempfile.TemporaryDirectory() as d:
        writer = ChunkedColumnWriter(d, ("v",), np.int32, (3,), options)
        at = 0
        for n in [*pieces, rows]:
            writer.append(values[at : at + n])
            at = min(at + n, rows)
        stats = writer.close()
        assert stats.rows == rows and stats.chunks == -(-rows // chunk_rows)
        reader = ChunkedColumnReader(
            d, ("v",), np.int32, (3,), options, rows,
            cache=None if cache is None else DecodedChunkCache(cache), threads=threads,
        )
        out = np.full((len(idx), 3), -1, np.int32)
        np.testing.assert_array_equal(reader.gather(idx, out), values[idx])
        np.testing.assert_array_equal(reader.read(start, stop), values[start:stop])
        if reader.cache is not None:
            assert reader.cache.nbytes <= reader.cache.max_bytes
        reader.close()


def test_concurrent_gathers_share_a_cache(tmp_path):
    values = np.arange(500 * 8, dtype=np.float64).reshape(500, 8)
    with ChunkedColumnWriter(tmp_path, ("v",), np.float64, (8,), Zstd(chunk_rows=8)) as writer:
        writer.append(values)
    cache = DecodedChunkCache(max_bytes=20 * 8 * 8 * 8)
    reader = ChunkedColumnReader(tmp_path, ("v",), np.float64, (8,), Zstd(chunk_rows=8), 500, cache=cache, threads=2)

    def work(seed):
        idx = np.random.default_rng(seed).integers(0, 500, size=64)
        return bool(np.array_equal(reader.gather(idx, np.empty((64, 8))), values[idx]))

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(40)))
    assert cache.nbytes <= cache.max_bytes
