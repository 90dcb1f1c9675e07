"""Small datasets pushed to the GCS emulator, and the emulator's count of the objects it served.

Every test of ``tests/remote`` that touches a bucket uses the ``gcs_server``
fixture (a wiped emulator, one xdist group) or its own ``fault_server``.
``downloads`` counts media requests at the emulator itself, which runs in the
test process, so downloads made by forked children and DataLoader workers are
counted too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import built_once

from torchrl_ext.encodings import Zstd
from torchrl_ext.format import read_manifest
from torchrl_ext.remote.publish import dataset_files, push
from torchrl_ext.synthetic import write_synthetic

PREFIX = "data/ds/"
URL = "gs://test-bucket/" + PREFIX
EPISODES = 5
LENGTH = (3, 17)  # lengths 3, 17, 16, 15, 14: 65 rows, episodes 2 and 3 cross shard ends
SHARD_ROWS = 24
OBS = (3,)


def _build(directory: Path) -> dict[str, Path]:
    common = {"episodes": EPISODES, "length": LENGTH, "obs_shape": OBS, "shard_rows": SHARD_ROWS, "events_every": 4}
    return {
        "raw": write_synthetic(directory / "raw", **common),
        "zstd": write_synthetic(directory / "zstd", encodings={"observation": Zstd(chunk_rows=4, dictionary=True)},
                                **common),
    }


@pytest.fixture(scope="session")
def local_datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"raw": root, "zstd": root}``: the same episodes, observations raw or zstd (with a dictionary)."""
    return built_once(tmp_path_factory, "remote_datasets", _build)


@dataclass(frozen=True)
class Published:
    """A local dataset and the URL it was pushed to."""

    local: Path
    url: str

    def objects(self) -> dict[str, bytes]:
        """Every object a push uploads, relative to the URL, with its bytes."""
        return {rel: (self.local / rel).read_bytes() for rel in dataset_files(self.local)}

    def metadata(self) -> set[str]:
        """The objects an open fetches: everything but the shards' files."""
        return {rel for rel in dataset_files(self.local) if not rel.startswith("shards/")}

    def shard_bytes(self) -> int:
        return max(s.bytes for s in read_manifest(self.local).shards)


@pytest.fixture
def publish(gcs_server: Any, local_datasets: dict[str, Path]) -> Callable[..., Published]:
    """``publish(kind="raw", url=URL)`` pushes a local dataset to the wiped emulator."""

    def go(kind: str = "raw", url: str = URL) -> Published:
        push(local_datasets[kind], url, progress=False)
        return Published(local_datasets[kind], url)

    return go


@pytest.fixture
def downloads(gcs_server: Any, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Object name (relative to ``PREFIX``) -> media downloads the emulator served, from any process."""
    from gcp_storage_emulator import server as emulator
    from gcp_storage_emulator.handlers import objects

    served: Counter[str] = Counter()

    def counted(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
        served[request.params["object_id"].removeprefix(PREFIX)] += 1
        return objects.download(request, response, storage, *args, **kwargs)

    handlers = tuple((regex, {m: counted if h is objects.download else h for m, h in table.items()})
                     for regex, table in emulator.HANDLERS)
    monkeypatch.setattr(emulator, "HANDLERS", handlers)
    return served


def assert_same_rows(a: dict, b: dict) -> None:
    """Two ``gather`` results hold the same columns, dtypes and values."""
    assert sorted(a) == sorted(b)
    for key, value in a.items():
        assert value.dtype == b[key].dtype, key
        np.testing.assert_array_equal(value, b[key], err_msg=str(key))


@pytest.fixture
def same_rows() -> Callable[[dict, dict], None]:
    """:func:`assert_same_rows`, for the test modules of this folder."""
    return assert_same_rows


def shard_dirs(root: Path) -> list[str]:
    """The shard directories present in a cache root, sorted."""
    return sorted(p.name for p in (root / "shards").iterdir())


@pytest.fixture
def present() -> Callable[[Path], list[str]]:
    """:func:`shard_dirs`, for the test modules of this folder."""
    return shard_dirs
