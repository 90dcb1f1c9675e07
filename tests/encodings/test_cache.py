"""The decoded-chunk LRU: byte budget, recency, sharing between readers."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from torchrl_ext.encodings import ChunkedColumnReader, ChunkedColumnWriter, DecodedChunkCache, Zstd


def _chunk(n: int, fill: int = 0) -> np.ndarray:
    return np.full(n, fill, np.uint8)


def test_budget_respected_and_lru_order():
    cache = DecodedChunkCache(max_bytes=250)
    for i in range(4):
        cache.put(i, _chunk(100, i))
        assert cache.nbytes <= 250
    assert [k for k in range(4) if k in cache] == [2, 3]
    cache.get(2)
    cache.put(4, _chunk(100))
    assert [k for k in range(5) if k in cache] == [2, 4] and cache.nbytes == 200


def test_value_larger_than_budget_is_not_kept():
    cache = DecodedChunkCache(max_bytes=50)
    cache.put("a", _chunk(51))
    assert len(cache) == 0 and cache.nbytes == 0


def test_replacing_a_key_updates_bytes():
    cache = DecodedChunkCache(max_bytes=1000)
    cache.put("a", _chunk(100))
    cache.put("a", _chunk(300, 7))
    assert cache.nbytes == 300 and cache.get("a")[0] == 7


def test_values_are_read_only():
    cache = DecodedChunkCache()
    value = _chunk(10)
    cache.put("a", value)
    assert value.flags.writeable and not cache.get("a").flags.writeable


def test_hits_and_misses():
    cache = DecodedChunkCache()
    cache.put("a", _chunk(1))
    cache.get("a"), cache.get("b")
    assert (cache.hits, cache.misses) == (1, 1)


def test_pickle_keeps_budget_drops_contents():
    cache = DecodedChunkCache(1234)
    cache.put("a", _chunk(10))
    clone = pickle.loads(pickle.dumps(cache))
    assert clone.max_bytes == 1234 and len(clone) == 0


def test_bad_budget():
    with pytest.raises(ValueError, match="`max_bytes` must be an int >= 0"):
        DecodedChunkCache(-1)


def test_shared_by_readers_within_budget(tmp_path):
    values = np.arange(64 * 100, dtype=np.uint8).reshape(64, 100)  # 16 chunks of 400 bytes
    for name in ("a", "b"):
        with ChunkedColumnWriter(tmp_path, (name,), np.uint8, (100,), Zstd(chunk_rows=4)) as writer:
            writer.append(values)
    cache = DecodedChunkCache(max_bytes=2000)
    readers = [ChunkedColumnReader(tmp_path, (n,), np.uint8, (100,), Zstd(chunk_rows=4), 64, cache=cache) for n in "ab"]
    np.testing.assert_array_equal(readers[0].read(0, 64), values)
    assert cache.nbytes == 2000 and len(cache) == 5
    np.testing.assert_array_equal(readers[1].read(40, 48), values[40:48])
    assert cache.nbytes == 2000 and len(cache) == 5
    hits = cache.hits
    readers[0].read(60, 64)  # the last chunk of reader a is still cached
    assert cache.hits == hits + 1
