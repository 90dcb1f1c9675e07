"""A real Google Cloud Storage API server (gcp-storage-emulator) for tests.

The server runs in-process on 127.0.0.1 with a free port, once per session;
every test gets it wiped back to its empty buckets and ``STORAGE_EMULATOR_HOST``
pointing at it. Register the fixtures with ``pytest_plugins = ["gcs_server"]``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BUCKET = "test-bucket"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class GCSServer:
    """Handle on the running emulator.

    Attributes:
        endpoint: ``http://127.0.0.1:<port>``, the value of ``STORAGE_EMULATOR_HOST``.
        bucket: name of the empty bucket every test starts with.
        client: an anonymous ``google.cloud.storage.Client`` talking to ``endpoint``.
        server: the ``gcp_storage_emulator.server.Server``.
    """

    endpoint: str
    bucket: str
    client: Any
    server: Any

    def add_listing_alias(self, bucket: str, alias: str, existing: str) -> None:
        """List ``existing``'s metadata under a name the emulator refuses to store.

        The emulator rejects uploads of names with ``..`` parts (real GCS accepts
        them), so a hostile listing entry is added to its object table directly.
        """
        objects = self.server._storage.objects[bucket]
        objects[alias] = dict(objects[existing], name=alias)


def upload_tree(client: Any, bucket: str, prefix: str, local_dir: str | Path) -> list[str]:
    """Upload every file under ``local_dir`` to ``gs://bucket/prefix<relative path>``.

    Returns:
        The object names, sorted.
    """
    local_dir = Path(local_dir)
    names = []
    for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        name = prefix + path.relative_to(local_dir).as_posix()
        client.bucket(bucket).blob(name).upload_from_filename(str(path))
        names.append(name)
    return names


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[tuple[Any, str]]:
    """The emulator process-wide: ``(server, endpoint)``."""
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def gcs_server(gcs_emulator: tuple[Any, str], monkeypatch: pytest.MonkeyPatch) -> GCSServer:
    """A wiped emulator with ``STORAGE_EMULATOR_HOST`` set for this test."""
    from google.cloud import storage

    server, endpoint = gcs_emulator
    server.wipe(keep_buckets=True)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
    client = storage.Client.create_anonymous_client()
    return GCSServer(endpoint=endpoint, bucket=BUCKET, client=client, server=server)
