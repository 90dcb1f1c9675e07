"""A real Google Cloud Storage API server (gcp-storage-emulator) for tests.

The server runs in-process on 127.0.0.1 with a free port, once per session;
every test gets it wiped back to its empty buckets and ``STORAGE_EMULATOR_HOST``
pointing at it. ``fault_server`` starts a small loopback server speaking the
same API that resets, truncates, corrupts or stalls media responses, never
answers, or dies after the listing. Register the fixtures with ``pytest_plugins = ["gcs_server"]``.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import socket
import struct
import threading
import urllib.parse
from collections.abc import Callable, Iterator
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
    """The emulator process-wide: ``(server, endpoint)``.

    It answers one request at a time, so two settings keep it from stalling
    parallel clients as no real server would: replies leave at once (no Nagle
    delay waiting for the client's delayed ACK, ~40 ms a request), and its
    accept queue holds 128 connects instead of 5 (a dropped connect waits 1 s
    for its retransmission).
    """
    from gcp_storage_emulator.server import RequestHandler, create_server

    RequestHandler.disable_nagle_algorithm = True
    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    server._api._httpd.socket.listen(128)
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


class FaultServer:
    """A loopback GCS JSON API that lists objects truthfully and misbehaves on media.

    Serves ``GET /storage/v1/b/<bucket>/o`` (one listing page),
    ``GET /storage/v1/b/<bucket>/o/<name>`` (one object's listing entry, or 404) and
    ``GET /download/storage/v1/b/<bucket>/o/<name>?alt=media`` (with ``Range:
    bytes=N-``). ``media`` picks what a media response does:

    ``"ok"``       the bytes asked for.
    ``"reset"``    sends ``limit`` bytes of the body (after full headers), then a TCP reset
                   (the client may drop the bytes it had not read yet).
    ``"close"``    sends ``limit`` bytes of the body, then closes cleanly (short body); a
                   retry from where it stopped gets the next ``limit`` bytes.
    ``"short"``    a complete response of only the first ``limit`` bytes.
    ``"wrong"``    the right number of bytes, every one inverted.
    ``"stall"``    sends the body up to byte ``limit`` of the object, then nothing until the
                   server stops (the client keeps only the whole read chunks it received). A
                   retry from byte ``start`` (``Range``) gets ``limit - start`` bytes, none past
                   ``limit``: the download can never finish, however fast the client retries.
    ``"silent"``   reads the request and answers nothing, not even a status line, until the
                   server stops.

    The listing leaves out the metadata keys in ``omit`` (e.g. ``"crc32c"``),
    answers HTTP 503 to its first ``listing_errors`` requests, and with
    ``die_after_listing`` the whole server stops right after its first listing.
    With ``silent=True`` it accepts every connection and answers no request at all, for any bucket.

    Attributes:
        endpoint: ``http://127.0.0.1:<port>``.
        media_requests: number of media requests received.
        listing_requests: number of listing requests received.
        accepted: number of client connections accepted.
        stopped: set once the server stops (stalled responses then end).
    """

    def __init__(self, objects: dict[str, bytes], bucket: str = BUCKET, *, media: str = "ok",
                 limit: int = 0, omit: tuple[str, ...] = (), listing_errors: int = 0,
                 die_after_listing: bool = False, silent: bool = False) -> None:
        self.objects, self.bucket, self.media, self.limit = objects, bucket, media, limit
        self.silent = silent
        self.omit, self.listing_errors, self.die_after_listing = omit, listing_errors, die_after_listing
        self.media_requests = 0
        self.listing_requests = 0
        self.accepted = 0
        self.connections: set = set()  # open client connections, closed by stop()
        self.stopped = threading.Event()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _fault_handler(self))
        self.httpd.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def metadata(self, name: str) -> dict[str, str]:
        """The listing entry of ``name``, without the keys in ``omit``."""
        import google_crc32c

        data = self.objects[name]
        item = {"kind": "storage#object", "name": name, "bucket": self.bucket, "size": str(len(data)),
                "generation": "1", "metageneration": "1",
                "crc32c": base64.b64encode(google_crc32c.Checksum(data).digest()).decode(),
                "md5Hash": base64.b64encode(hashlib.md5(data).digest()).decode()}
        return {k: v for k, v in item.items() if k not in self.omit}

    def refuse_connections(self) -> None:
        """Shuts the listening socket down at once (connects get a reset); checks that a connect is refused."""
        self.httpd.socket.shutdown(socket.SHUT_RDWR)
        try:
            socket.create_connection(self.httpd.server_address, timeout=5).close()
        except ConnectionRefusedError:
            return
        raise RuntimeError(f"{self.endpoint} still accepts connections after its listening socket was shut down")

    def stop(self, keep: Any = None, wait: float | None = 5.0) -> None:
        """Dies like a crashed server: the listening socket and every open connection close.

        ``keep``: a connection still answering its last request (closed right after).
        ``wait``: seconds to wait for the server loop to end and its socket to close.
        """
        self.stopped.set()
        for conn in list(self.connections - {keep}):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def close() -> None:
            self.httpd.shutdown()
            self.httpd.server_close()

        closer = threading.Thread(target=close, daemon=True)  # safe from a request handler too
        closer.start()
        closer.join(timeout=wait)


def _fault_handler(fs: FaultServer) -> type:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            fs.accepted += 1
            fs.connections.add(self.connection)


        def _send(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:  # say so: a client must not send its next request down this socket
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            media = f"/download/storage/v1/b/{fs.bucket}/o/"
            if fs.silent:  # any bucket: a listing is whatever the client asks for first
                fs.listing_requests += url.path.startswith("/storage/v1/b/") and url.path.endswith("/o")
                self._silence()
                return
            if url.path == f"/storage/v1/b/{fs.bucket}/o":
                fs.listing_requests += 1
                if fs.listing_requests <= fs.listing_errors:
                    self._send(503, b'{"error": {"code": 503, "message": "try again"}}')
                    return
                prefix = urllib.parse.parse_qs(url.query).get("prefix", [""])[0]
                items = [fs.metadata(n) for n in sorted(fs.objects) if n.startswith(prefix)]
                if fs.die_after_listing:  # dies at this point of the protocol, not after a delay:
                    fs.refuse_connections()  # every later connect is refused, however slow the machine,
                    self.close_connection = True  # so no retry or download can reach it again
                    fs.stop(keep=self.connection, wait=0)  # the rest of the shutdown goes on in the background
                self._send(200, json.dumps({"kind": "storage#objects", "items": items}).encode())
            elif url.path.startswith(media):
                self._media(urllib.parse.unquote(url.path[len(media):]))
            elif url.path.startswith(f"/storage/v1/b/{fs.bucket}/o/"):  # one object's metadata (get_blob)
                name = urllib.parse.unquote(url.path[len(f"/storage/v1/b/{fs.bucket}/o/"):])
                if name in fs.objects:
                    self._send(200, json.dumps(fs.metadata(name)).encode())
                else:
                    self._send(404, b'{"error": {"code": 404, "message": "not found"}}')
            else:
                self._send(404, b'{"error": {"code": 404, "message": "not found"}}')

        def _silence(self) -> None:
            """Answers nothing until the server stops, then closes the connection."""
            fs.stopped.wait()
            self.close_connection = True

        def _media(self, name: str) -> None:
            fs.media_requests += 1
            if fs.media == "silent":
                self._silence()
                return
            data = fs.objects[name]
            start = int(self.headers.get("Range", "bytes=0-")[len("bytes="):].split("-")[0] or 0)
            body = data[start:fs.limit] if fs.media == "short" else data[start:]
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if fs.media in ("ok", "short"):
                self.wfile.write(body)
                return
            if fs.media == "wrong":
                self.wfile.write(bytes(b ^ 0xFF for b in body))
                return
            # reset/close: `limit` bytes per response (a retry from where it stopped gets the next ones);
            # stall: never past byte `limit` of the object, so a resumed request makes no progress either
            self.wfile.write(body[: max(0, fs.limit - start) if fs.media == "stall" else fs.limit])
            self.wfile.flush()
            if fs.media == "stall":
                fs.stopped.wait()
            elif fs.media == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

        def finish(self) -> None:
            fs.connections.discard(self.connection)
            try:
                super().finish()
            except OSError:
                pass

    return Handler


@pytest.fixture
def fault_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., FaultServer]]:
    """``fault_server(objects, **options)`` starts a :class:`FaultServer` with
    ``STORAGE_EMULATOR_HOST`` pointing at it; every server stops after the test."""
    servers: list[FaultServer] = []

    def start(objects: dict[str, bytes], **options: Any) -> FaultServer:
        fs = FaultServer(objects, **options)
        servers.append(fs)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", fs.endpoint)
        return fs

    yield start
    for fs in servers:
        fs.stop()
