"""EventIndex.build SIGKILLed at every fsync/rename: the saved index is the old one or the new one.

(The one exception, an index saved before ``events/index`` became a symlink, is
replaced once with a moment of no index; the index is rebuilt from the logs.)
"""

from __future__ import annotations

import shutil
import signal

import numpy as np
import pytest
from helpers import run_killed

from torchrl_ext import EventIndex, FormatError
from torchrl_ext.synthetic import write_synthetic

pytestmark = pytest.mark.slow  # a forked child per trial


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = write_synthetic(tmp_path_factory.mktemp("ds") / "ds", episodes=6, length=(5, 20), obs_shape=(2,),
                           events_every=3)
    EventIndex.build(root)  # an older index (logged events only) is on disk when the rebuild starts
    return root


def _arrays(index: EventIndex) -> dict[str, np.ndarray]:
    return {k: np.asarray(getattr(index, k)) for k in ("names", "name_id", "episode", "step", "row", "value")}


@pytest.mark.parametrize("kill_at", range(1, 16, 2))
def test_killed_build_leaves_the_old_or_the_new_index(tmp_path, base, kill_at):
    root = tmp_path / "ds"
    shutil.copytree(base, root, symlinks=True)
    old = _arrays(EventIndex.load(root))
    code = run_killed(kill_at, EventIndex.build, root, columns={"reward": ("next", "reward")}, sigkill=True)
    assert code in (0, -signal.SIGKILL)
    new = _arrays(EventIndex.build(base, columns={"reward": ("next", "reward")}, save=False))
    try:
        found = _arrays(EventIndex.load(root))
    except FormatError as err:  # never a half-written index
        pytest.fail(f"the saved index does not load after a kill at call {kill_at}: {err}")
    assert any(all(np.array_equal(found[k], ref[k]) for k in found) for ref in (old, new))
    rebuilt = _arrays(EventIndex.build(root, columns={"reward": ("next", "reward")}))
    assert all(np.array_equal(rebuilt[k], new[k]) for k in new)
