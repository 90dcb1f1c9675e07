"""Window frames decoded straight into the item buffer equal the stored frames (resized as MineStudio does)."""

from __future__ import annotations

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("lmdb")

from helpers import built_once
from interop.minestudio.ms_maker import write_minestudio_dataset

from torchrl_ext import ShardedStorage
from torchrl_ext.interop.minestudio.frames import WindowFrames
from torchrl_ext.interop.minestudio import import_minestudio


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    def build(base):
        write_minestudio_dataset(base / "src", (96, 64), names=["f-player0-100", "f-player1-101"])
        # shards of 64 rows: the first episode straddles two
        import_minestudio(base / "src", base / "root", progress=False, shard_rows=64)
        return ShardedStorage(base / "root")

    storage = built_once(tmp_path_factory, "minestudio_frames", build)
    assert storage.num_shards == 3
    return storage


def _expected(storage, rows, mask, size):
    shape = storage.manifest.column(("image",)).shape
    frames = storage.reader.gather_column(("image",), rows.reshape(-1)).reshape(*rows.shape, *shape)
    out = np.zeros((*rows.shape, size[1], size[0], 3), np.uint8)
    for k in range(rows.shape[0]):
        for t in range(rows.shape[1]):
            if mask[k, t]:
                out[k, t] = frames[k, t] if frames.shape[2:4] == size[::-1] else cv2.resize(
                    frames[k, t], size, interpolation=cv2.INTER_LINEAR)
    return out


@pytest.mark.parametrize("size", [(64, 64), (48, 32), None], ids=["square", "wide", "stored size"])
def test_fill_equals_stored_frames(storage, size):
    stored = storage.manifest.column(("image",)).shape
    size = size or (stored[1], stored[0])
    rows = np.array([np.arange(40, 80), np.arange(120, 160), np.arange(0, 40)])  # the first crosses a shard boundary
    mask = np.ones(rows.shape, bool)
    mask[1, 36:] = False  # past the end of the episode
    mask[2, :5] = False  # not a prefix: positions before the first valid one
    mask[2, 20] = False
    frames = WindowFrames(storage, *size)
    out = np.full((*rows.shape, size[1], size[0], 3), 7, np.uint8)
    np.testing.assert_array_equal(frames.fill(rows, mask, out), _expected(storage, rows, mask, size))


def test_pickles_without_open_readers(storage):
    import pickle

    frames = WindowFrames(storage, 64, 64)
    rows, mask = np.arange(0, 32)[None], np.ones((1, 32), bool)
    first = frames.fill(rows, mask, np.empty((1, 32, 64, 64, 3), np.uint8)).copy()
    copy = pickle.loads(pickle.dumps(frames))
    assert copy._readers == {} and copy._scratch is None
    np.testing.assert_array_equal(copy.fill(rows, mask, np.empty((1, 32, 64, 64, 3), np.uint8)), first)
