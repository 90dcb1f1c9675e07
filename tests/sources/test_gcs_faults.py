"""Downloads that cannot finish end in bounded time, with one line saying why and what is kept.

Servers are on 127.0.0.1 only: closed ports, a listening socket whose accept
queue is full (connects time out), a name under ``.invalid`` (never resolves),
the real gcp-storage-emulator stopped after its listing, and the loopback
``FaultServer`` of ``gcs_server`` that resets, truncates, corrupts or stalls media,
or accepts connections and never answers.

Every message carries what its cause would say, so errors are raised without
the chain of library exceptions behind them (``__cause__`` None, context suppressed).
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gcs_server import upload_tree

from torchrl_ext.interop.atari_dqn import (
    BucketReplayLogs,
    download_atari_run,
    list_atari_checkpoints,
)
from torchrl_ext.sources import download_prefix, list_objects
from torchrl_ext.remote.gcs_errors import (
    ChecksumMismatchError,
    DownloadStalledError,
    RemoteSourceError,
    SourceUnreachableError,
)

PREFIX = "dqn/Pong/1/replay_logs/"
HANG_GUARD = 30.0  # seconds; every case here is bounded by a deadline of 1-2 s
WAYS_OUT = r"`bucket=` or STORAGE_EMULATOR_HOST=http://host:port, or .*`local_dir=`"
SILENT_GUARD = 60  # seconds (pytest-timeout); every silent-server case has a deadline of 1.5 s


def _objects(n: int = 2, size: int = 5000) -> dict[str, bytes]:
    return {f"{PREFIX}add_count_ckpt.{i}.gz": bytes((i * 7 + j) % 251 for j in range(size)) for i in range(n)}


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port that accepts no connection: its accept queue is full, so connects time out."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))
    try:
        yield port
    finally:
        filler.close()
        srv.close()


def _timed(fn, *args, **kwargs):
    t0 = time.monotonic()
    with pytest.raises(Exception) as info:
        fn(*args, **kwargs)
    elapsed = time.monotonic() - t0
    assert elapsed < HANG_GUARD, f"took {elapsed:.1f} s"
    return info.value


def _chain_hidden(err: BaseException) -> bool:
    """Raised ``from None``: no cause, and the context it was raised in is not shown."""
    return err.__cause__ is None and err.__suppress_context__


# ------------------------------------------------------------------ unreachable: fail at the listing
@pytest.mark.parametrize(
    ("host", "port", "why"),
    [
        ("http://127.0.0.1:{}", "closed_port", r"connection failed: Connection refused"),
        ("127.0.0.1:{}", "closed_port", r"connection failed: Connection refused"),
        ("http://nonexistent.invalid:1", None, r"name resolution failed"),
        pytest.param("http://127.0.0.1:{}", "full_backlog", r"the connection did not open within 5 s",
                     marks=pytest.mark.slow),  # waits CONNECT_TIMEOUT
    ],
)
def test_unreachable_server_fails_at_once_naming_host_and_ways_out(monkeypatch, request, tmp_path, host, port,
                                                                   why):
    host = host.format(request.getfixturevalue(port) if port else None)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", host)
    err = _timed(download_atari_run, "Pong", 1, tmp_path / "logs", progress=False, deadline=60)
    assert isinstance(err, SourceUnreachableError) and isinstance(err, RemoteSourceError)
    text = str(err)
    assert "\n" not in text
    assert re.search(rf"^cannot reach http://{re.escape(host.removeprefix('http://'))} \({why}", text), text
    assert "to list gs://atari-replay-datasets/dqn/Pong/1/replay_logs/; " in text
    assert re.search(WAYS_OUT, text), text
    assert _chain_hidden(err)
    assert not (tmp_path / "logs").exists()


@pytest.mark.slow
@pytest.mark.timeout(SILENT_GUARD)
def test_server_that_never_answers_the_listing_fails_at_once_naming_the_read_timeout(fault_server, tmp_path):
    fs = fault_server(_objects(n=1), silent=True)
    with pytest.raises(SourceUnreachableError, match=r"did not answer within 1\.5 s") as info:
        download_atari_run("Pong", 1, tmp_path / "d", bucket="test-bucket", progress=False, deadline=1.5)
    assert str(info.value) == (
        f"cannot reach {fs.endpoint} (the server accepted the connection but did not answer within 1.5 s) "
        f"to list gs://test-bucket/{PREFIX}; point at a reachable mirror with `bucket=` or "
        "STORAGE_EMULATOR_HOST=http://host:port, or convert files already on disk with `local_dir=`"
    )
    assert _chain_hidden(info.value)
    assert fs.listing_requests == 1  # never answered: not retried, like a server that cannot be reached
    assert not (tmp_path / "d").exists()


@pytest.mark.slow
@pytest.mark.timeout(SILENT_GUARD)
def test_media_that_never_answers_ends_at_the_deadline_naming_the_read_timeout(fault_server, tmp_path):
    objects = _objects(n=1)
    (name, data), = objects.items()
    fs = fault_server(objects, media="silent")
    dest = tmp_path / "dest"
    with pytest.raises(DownloadStalledError, match=r"no data from .* for 1\.5 s \(the server accepted") as info:
        download_prefix("test-bucket", PREFIX, dest, progress=False, deadline=1.5)
    assert str(info.value) == (
        f"gs://test-bucket/{name}: no data from {fs.endpoint} for 1.5 s (the server accepted the connection "
        f"but did not answer within 1.5 s); 0 of {len(data)} bytes are kept in "
        f"{dest / (name.rsplit('/', 1)[1] + '.part')}; run the download again to resume from there"
    )
    assert _chain_hidden(info.value)
    assert fs.media_requests >= 1 and not list(dest.glob("*.gz"))


@pytest.mark.slow
@pytest.mark.timeout(SILENT_GUARD)
def test_streamed_object_that_never_answers_ends_at_the_deadline(fault_server):
    objects = _objects(n=1)
    (name, _), = objects.items()
    fs = fault_server(objects, media="silent")
    logs = BucketReplayLogs("test-bucket", PREFIX, deadline=1.5)
    with logs.open(name.rsplit("/", 1)[1]) as stream, pytest.raises(DownloadStalledError,
                                                                     match=r"at byte 0 \(the server accepted") as info:
        stream.read()
    assert str(info.value) == (
        f"gs://test-bucket/{name}: no data from {fs.endpoint} for 1.5 s at byte 0 (the server accepted the "
        "connection but did not answer within 1.5 s); run the conversion again to resume after the episodes "
        "it committed"
    )
    assert _chain_hidden(info.value)


def test_unreachable_server_fails_without_retrying(monkeypatch, closed_port):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{closed_port}")
    t0 = time.monotonic()
    with pytest.raises(SourceUnreachableError, match=r"Connection refused"):
        list_objects("b", "p/", deadline=120)
    assert time.monotonic() - t0 < 10  # not retried until the deadline: a refused connection fails at once


@pytest.mark.parametrize("call", ["list_atari_checkpoints", "download_prefix"])
def test_every_listing_path_fails_fast(monkeypatch, tmp_path, closed_port, call):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{closed_port}")
    with pytest.raises(SourceUnreachableError, match=rf"cannot reach http://127.0.0.1:{closed_port} "):
        if call == "list_atari_checkpoints":
            list_atari_checkpoints("Pong", 1, deadline=60)
        else:
            download_prefix("b", "p/", tmp_path, progress=False, deadline=60)


def test_atari_dataset_download_fails_fast(monkeypatch, tmp_path, closed_port):
    from torchrl_ext.interop.atari_dqn import prepare_atari_dqn

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{closed_port}")
    err = _timed(prepare_atari_dqn, "Pong/1", tmp_path)
    assert isinstance(err, SourceUnreachableError)
    assert "`local_dir=`" in str(err)


@pytest.mark.parametrize("deadline", [0, -1, float("inf"), "10", True])
def test_bad_deadline(tmp_path, deadline):
    with pytest.raises(ValueError, match=r"`deadline` must be a positive number of seconds"):
        download_prefix("b", "p/", tmp_path, progress=False, deadline=deadline)


# ------------------------------------------------------------------ the real emulator, stopped
@pytest.fixture
def private_emulator(monkeypatch) -> Iterator[tuple[object, object]]:
    """A gcp-storage-emulator of this test alone (stopping it leaves the shared one running)."""
    from gcp_storage_emulator.server import create_server
    from google.cloud import storage

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="private-bucket")
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    try:
        yield server, storage.Client.create_anonymous_client()
    finally:
        server.stop()


@pytest.mark.slow
def test_emulator_stopped_after_listing_ends_within_deadline_keeping_parts(private_emulator, tmp_path):
    server, client = private_emulator
    src = tmp_path / "src"
    src.mkdir()
    for name, data in _objects().items():
        (src / name.rsplit("/", 1)[1]).write_bytes(data)
    upload_tree(client, "private-bucket", PREFIX, src)
    blobs = list_objects("private-bucket", PREFIX, client=client)
    dest = tmp_path / "dest"
    dest.mkdir()
    kept = blobs[0].name.rsplit("/", 1)[1] + ".part"
    (dest / kept).write_bytes((src / kept.removesuffix(".part")).read_bytes()[:1234])
    server.stop()
    err = _timed(download_prefix, "private-bucket", PREFIX, dest, blobs=blobs, client=client,
                 progress=False, deadline=1.5)
    assert isinstance(err, DownloadStalledError)
    text = str(err)
    assert "\n" not in text
    assert text.startswith(f"gs://private-bucket/{PREFIX}add_count_ckpt.")
    assert "no data from http://127.0.0.1:" in text and "for 1.5 s (connection failed: Connection refused)" in text
    assert "run the download again to resume" in text
    assert _chain_hidden(err)
    assert (dest / kept).read_bytes() == (src / kept.removesuffix(".part")).read_bytes()[:1234]
    assert not any(p.suffix == ".gz" for p in dest.iterdir())


# ------------------------------------------------------------------ the fault server
def _kept(text: str, part: Path, data: bytes) -> int:
    """The byte count the message says is kept; checks it is ``part``'s size and a prefix of ``data``."""
    match = re.search(rf"; (\d+) of {len(data)} bytes are kept in {re.escape(str(part))}; run the download "
                      "again to resume from there$", text)
    assert match, text
    kept = int(match[1])
    assert part.read_bytes() == data[:kept]
    return kept


@pytest.mark.slow
@pytest.mark.parametrize(("media", "limit", "why"), [
    ("reset", 0, r"connection reset by peer|connection closed before the response was complete"),
    ("close", 0, r"connection closed before the response was complete"),
    ("stall", 30_000, r"read timed out"),
])
def test_media_without_progress_ends_within_deadline(fault_server, tmp_path, media, limit, why):
    objects = _objects(n=1, size=50_000)
    fs = fault_server(objects, media=media, limit=limit)
    dest = tmp_path / "dest"
    err = _timed(download_prefix, "test-bucket", PREFIX, dest, progress=False, deadline=1.5)
    assert isinstance(err, DownloadStalledError), repr(err)
    text = str(err)
    (name, data), = objects.items()
    assert "\n" not in text
    assert text.startswith(f"gs://test-bucket/{name}: no data from {fs.endpoint} for 1.5 s (")
    assert re.search(why, text), text
    assert _chain_hidden(err)
    kept = _kept(text, dest / (name.rsplit("/", 1)[1] + ".part"), data)
    assert (kept > 0) == (media == "stall")  # whole chunks before the stall arrive
    assert not (dest / name.rsplit("/", 1)[1]).exists()


@pytest.mark.slow
def test_media_cut_after_some_bytes_resumes_to_a_byte_exact_file(fault_server, tmp_path, caplog):
    objects = _objects(n=2)
    fs = fault_server(objects, media="close", limit=1200)
    dest = tmp_path / "dest"
    with caplog.at_level(logging.INFO, logger="torchrl_ext"):
        paths = download_prefix("test-bucket", PREFIX, dest, progress=False, deadline=5, threads=2)
    assert {p.name: p.read_bytes() for p in paths} == {k.rsplit("/", 1)[1]: v for k, v in objects.items()}
    assert not list(dest.glob("*.part"))
    assert fs.media_requests == 2 * 5  # 5000 bytes in pieces of 1200
    assert "mismatch" not in caplog.text


@pytest.mark.slow
def test_rerun_after_a_stall_resumes_from_the_kept_part(fault_server, tmp_path):
    objects = _objects(n=1, size=50_000)
    (name, data), = objects.items()
    fs = fault_server(objects, media="stall", limit=30_000)
    dest = tmp_path / "dest"
    with pytest.raises(DownloadStalledError, match=r"bytes are kept") as info:
        download_prefix("test-bucket", PREFIX, dest, progress=False, deadline=1)
    kept = _kept(str(info.value), dest / (name.rsplit("/", 1)[1] + ".part"), data)
    fs.media = "ok"
    requests_before = fs.media_requests
    download_prefix("test-bucket", PREFIX, dest, progress=False, deadline=5)
    assert (dest / name.rsplit("/", 1)[1]).read_bytes() == data
    assert fs.media_requests == requests_before + 1 and kept > 0


def test_wrong_bytes_fail_the_checksum_and_keep_no_part(fault_server, tmp_path):
    objects = _objects(n=1)
    fs = fault_server(objects, media="wrong")
    dest = tmp_path / "dest"
    with pytest.raises(ChecksumMismatchError, match=r"add_count_ckpt.0.gz failed its crc32c check 2 times"):
        download_prefix("test-bucket", PREFIX, dest, progress=False, retries=1, deadline=5)
    assert list(dest.iterdir()) == []
    assert fs.media_requests == 2


@pytest.mark.parametrize(("omit", "size_only"), [(("crc32c",), False), (("crc32c", "md5Hash"), True)])
def test_listing_without_crc32c_falls_back(fault_server, tmp_path, caplog, omit, size_only):
    objects = _objects(n=1)
    fault_server(objects, omit=omit)
    with caplog.at_level(logging.WARNING, logger="torchrl_ext"):
        (path,) = download_prefix("test-bucket", PREFIX, tmp_path / "d", progress=False, deadline=5)
    assert path.read_bytes() == next(iter(objects.values()))
    assert ("neither crc32c nor md5Hash; only its size (5000 bytes) is checked" in caplog.text) == size_only


def test_md5_fallback_detects_wrong_bytes(fault_server, tmp_path):
    fault_server(_objects(n=1), omit=("crc32c",), media="wrong")
    with pytest.raises(ChecksumMismatchError, match=r"failed its md5 check 1 times \(expected 5000 bytes, "):
        download_prefix("test-bucket", PREFIX, tmp_path / "d", progress=False, retries=0, deadline=5)
    assert list((tmp_path / "d").iterdir()) == []


def test_size_only_check_detects_a_short_object(fault_server, tmp_path, caplog):
    fault_server(_objects(n=1), omit=("crc32c", "md5Hash"), media="short", limit=4000)
    with (caplog.at_level(logging.WARNING, logger="torchrl_ext"),
          pytest.raises(ChecksumMismatchError, match=r"failed its size check 2 times \(expected 5000 bytes\)")):
        download_prefix("test-bucket", PREFIX, tmp_path / "d", progress=False, retries=1, deadline=5)
    assert "size mismatch for" in caplog.text and "4000 bytes; expected 5000 bytes" in caplog.text


@pytest.mark.slow
def test_server_dying_after_listing_ends_within_deadline(fault_server, tmp_path):
    objects = _objects(n=3)
    fs = fault_server(objects, die_after_listing=True)
    err = _timed(download_atari_run, "Pong", 1, tmp_path / "d", bucket="test-bucket", progress=False,
                 deadline=1.5)
    assert isinstance(err, DownloadStalledError)
    assert f"no data from {fs.endpoint} for 1.5 s (connection failed: Connection refused)" in str(err)
    assert fs.listing_requests == 1 and fs.media_requests < len(objects)  # the objects never all arrive


@pytest.mark.slow
def test_one_stalled_object_stops_the_whole_call(fault_server, tmp_path):
    objects = _objects(n=4)
    fault_server(objects, media="stall", limit=10)
    dest = tmp_path / "d"
    err = _timed(download_prefix, "test-bucket", PREFIX, dest, progress=False, threads=4, deadline=1)
    assert isinstance(err, DownloadStalledError)
    parts = {p.name: p.read_bytes() for p in dest.glob("*.part")}
    assert sorted(parts) == sorted(n.rsplit("/", 1)[1] + ".part" for n in objects)
    assert all(objects[PREFIX + k.removesuffix(".part")].startswith(v) for k, v in parts.items())
    assert not list(dest.glob("*.gz"))


def test_missing_object_size_is_refused(fault_server, tmp_path):
    fault_server(_objects(n=1), omit=("size",))
    with pytest.raises(RemoteSourceError, match=r"the listing gives no valid size \(None\)"):
        download_prefix("test-bucket", PREFIX, tmp_path / "d", progress=False)
    assert not (tmp_path / "d").exists()


def test_transient_listing_errors_are_retried(fault_server, tmp_path):
    objects = _objects(n=1)
    fs = fault_server(objects, listing_errors=2)
    (path,) = download_prefix("test-bucket", PREFIX, tmp_path / "d", progress=False, deadline=10)
    assert path.read_bytes() == next(iter(objects.values()))
    assert fs.listing_requests == 3


@pytest.mark.slow
def test_listing_failing_until_the_deadline_is_named(fault_server, tmp_path):
    fs = fault_server(_objects(n=1), listing_errors=10**6)
    err = _timed(download_prefix, "test-bucket", PREFIX, tmp_path / "d", progress=False, deadline=1.5)
    assert isinstance(err, SourceUnreachableError)
    assert re.fullmatch(rf"{fs.endpoint} kept failing for 1.5 s while listing gs://test-bucket/{PREFIX} "
                        rf"\(HTTP 503\); retry later, or point at .*", str(err)), str(err)
    assert fs.listing_requests >= 2
    assert _chain_hidden(err)
