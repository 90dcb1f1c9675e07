"""Every small JSON file a dataset keeps is parsed depth-first checked (``loads_json``), not by a bare
``json.loads``: a file nested 100,000 deep gets each reader's ordinary refusal, never a ``RecursionError``."""

from __future__ import annotations

import pytest

from torchrl_ext import ShardedStorage
from torchrl_ext.format import FormatError
from torchrl_ext.samplers import RollingShardSampler
from torchrl_ext.storages.checkpoint import CHECKPOINT_NAME, ShardedStorageCheckpointer
from torchrl_ext.synthetic import write_synthetic
from torchrl_ext.writer.lock import LOCK_NAME, lock_owner

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("deep") / "ds", episodes=2, length=5, obs_shape=(2,))


def test_a_deep_lock_file_has_no_owner(tmp_path):
    (tmp_path / LOCK_NAME).write_text(DEEP)
    assert lock_owner(tmp_path) is None


def test_a_deep_storage_checkpoint_is_a_format_error(root, tmp_path):
    (tmp_path / CHECKPOINT_NAME).write_text(DEEP)
    with pytest.raises(FormatError, match=r"expected a JSON object with `root` and `num_rows`"):
        ShardedStorageCheckpointer().loads(ShardedStorage(root), tmp_path)


def test_a_deep_sampler_state_is_a_format_error(tmp_path):
    sampler = RollingShardSampler(window=2)
    sampler.dumps(tmp_path)
    (state,) = tmp_path.iterdir()
    state.write_text("[" * 1_000 + "]" * 1_000)  # within the state's size cap, far past the nesting bound
    with pytest.raises(FormatError, match=r"not a RollingShardSampler state \(arrays and objects nest 1000 deep; "
                                          r"expected at most 100 levels\)"):
        sampler.loads(tmp_path)
