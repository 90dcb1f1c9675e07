"""The bucket of ``bench_remote.py``: gcp-storage-emulator behind a byte-counting, delaying TCP relay.

Both run in child processes, so neither shares the measured process's GIL.
The relay passes every connection through to the emulator, counts the bytes
and requests it sends back (HTTP headers and listings included) and, when
``set_delay(s)`` is in force, holds each request ``s`` seconds before passing
it on. The emulator speaks HTTP/1.0, one request per connection, so the delay
is also paid once per connection, as a round trip to a distant bucket would be.

Also the runner's plain google-cloud-storage calls: uploading a directory,
and downloading a whole prefix (the whole-download ceiling).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BUCKET = "bench-bucket"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def serve_emulator(port: int) -> None:
    """The emulator (in memory), its listen backlog raised from http.server's 5: past that, Linux drops
    new connections' SYNs and clients retry a second later, which a real bucket never makes them do."""
    import http.server

    from gcp_storage_emulator.server import create_server

    http.server.HTTPServer.request_queue_size = 1024
    create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET).start()
    threading.Event().wait()


def _pipe(src: socket.socket, dst: socket.socket, on_data) -> None:
    try:
        while data := src.recv(1 << 20):
            on_data(data)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _relay(client: socket.socket, target: int, delay, counts, lock: threading.Lock) -> None:
    """One connection; a request (the client's bytes after a response, or its first) waits ``delay``."""
    try:
        server = socket.create_connection(("127.0.0.1", target))
    except OSError:
        client.close()
        return
    fresh = [True]

    def up(data: bytes) -> None:
        if fresh[0]:
            fresh[0] = False
            with lock:
                counts[1] += 1
            if delay.value:
                time.sleep(delay.value)

    def back(data: bytes) -> None:
        fresh[0] = True
        with lock:
            counts[0] += len(data)

    t = threading.Thread(target=_pipe, args=(server, client, back), daemon=True)
    t.start()
    _pipe(client, server, up)
    t.join()
    client.close()
    server.close()


def serve_relay(port: int, target: int, delay, counts) -> None:
    """A thread per connection on ``port``, relaying to ``target``; ``counts`` = [bytes back, requests]."""
    lock = threading.Lock()
    sock = socket.create_server(("127.0.0.1", port), backlog=1024)
    while True:
        conn, _ = sock.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_relay, args=(conn, target, delay, counts, lock), daemon=True).start()


class Servers:
    """The emulator and the relay in front of it; ``STORAGE_EMULATOR_HOST`` points at the relay.

    Objects are uploaded through the relay too: the emulator writes the host
    of the upload into each object's ``mediaLink``, which google-cloud-storage
    downloads from.
    """

    def __init__(self) -> None:
        ctx = mp.get_context("fork")
        self.emulator_port, self.port = free_port(), free_port()
        self.delay = ctx.Value("d", 0.0, lock=False)
        self.counts = ctx.Array("q", 2, lock=False)
        self.procs = [
            ctx.Process(target=serve_emulator, args=(self.emulator_port,), daemon=True),
            ctx.Process(target=serve_relay, args=(self.port, self.emulator_port, self.delay, self.counts),
                        daemon=True),
        ]
        for p in self.procs:
            p.start()
        for port in (self.emulator_port, self.port):
            wait_port(port)
        os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{self.port}"

    def set_delay(self, seconds: float) -> None:
        self.delay.value = seconds

    def received(self) -> tuple[int, int]:
        """``(bytes, requests)`` the relay has sent back and passed on so far."""
        return self.counts[0], self.counts[1]

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
            p.join()


def client():
    from google.cloud import storage

    return storage.Client.create_anonymous_client()


def upload_dir(local: Path, prefix: str) -> int:
    bucket = client().bucket(BUCKET)
    files = [p for p in sorted(local.rglob("*")) if p.is_file()]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: bucket.blob(prefix + p.relative_to(local).as_posix()).upload_from_filename(str(p)),
                      files))
    return sum(p.stat().st_size for p in files)


def download_all(prefix: str, dest: Path) -> None:
    """The whole-dataset download: every object under ``prefix``, plain google-cloud-storage, 8 threads."""
    c = client()
    blobs = list(c.list_blobs(BUCKET, prefix=prefix))

    def one(b) -> None:
        path = dest / b.name[len(prefix):]
        path.parent.mkdir(parents=True, exist_ok=True)
        b.download_to_filename(str(path), client=c)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, blobs))
