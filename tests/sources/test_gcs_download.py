"""Downloads from a real GCS API server (gcp-storage-emulator on 127.0.0.1)."""

from __future__ import annotations

import base64
import logging
import sys
import zlib
from pathlib import Path

import pytest
from gcs_server import upload_tree

from torchrl_ext.interop.atari_dqn import download_atari_run, list_atari_checkpoints
from torchrl_ext.sources import RemoteSourceError, anonymous_client, download_prefix, file_crc32c

PREFIX = "dqn/Pong/1/replay_logs/"
KINDS = ["$store$_observation", "$store$_action", "$store$_reward", "$store$_terminal", "add_count", "invalid_range"]


def _payload(name: str, size: int) -> bytes:
    """Deterministic, incompressible-looking bytes distinct per name."""
    seed = zlib.crc32(name.encode())
    out = bytearray()
    while len(out) < size:
        seed = (seed * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        out += seed.to_bytes(8, "little")
    return bytes(out[:size])


def _tree(root: Path, checkpoints: range = range(3), size: int = 3000) -> dict[str, bytes]:
    files = {}
    for c in checkpoints:
        for kind in KINDS:
            name = f"{kind}_ckpt.{c}.gz"
            files[name] = _payload(name, size + 17 * c)
            (root / name).write_bytes(files[name])
    return files


@pytest.fixture
def run_tree(gcs_server, tmp_path: Path) -> dict[str, bytes]:
    src = tmp_path / "src"
    src.mkdir()
    files = _tree(src)
    upload_tree(gcs_server.client, gcs_server.bucket, PREFIX, src)
    return files


def _read_all(dest: Path) -> dict[str, bytes]:
    return {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()}


@pytest.mark.parametrize("strip_scheme", [False, True])
def test_anonymous_client_uses_emulator_endpoint(gcs_server, monkeypatch, strip_scheme):
    if strip_scheme:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.endpoint.removeprefix("http://"))
    client = anonymous_client()
    assert client._connection.API_BASE_URL == gcs_server.endpoint
    assert client.project is None


def test_emulator_reports_gcs_style_crc32c(gcs_server, run_tree):
    name = "add_count_ckpt.1.gz"
    blob = gcs_server.client.bucket(gcs_server.bucket).get_blob(PREFIX + name)
    import google_crc32c

    expected = base64.b64encode(google_crc32c.Checksum(run_tree[name]).digest()).decode()
    assert blob.crc32c == expected


@pytest.mark.parametrize("threads", [1, 4])
def test_download_prefix_is_byte_exact(gcs_server, run_tree, tmp_path, threads):
    dest = tmp_path / "dest"
    paths = download_prefix(gcs_server.bucket, PREFIX, dest, threads=threads, progress=False)
    assert sorted(p.name for p in paths) == sorted(run_tree)
    assert _read_all(dest) == run_tree


def test_download_keeps_subdirectories(gcs_server, tmp_path):
    bucket = gcs_server.client.bucket(gcs_server.bucket)
    bucket.blob("top/a/b/c.bin").upload_from_string(b"deep")
    bucket.blob("top/d.bin").upload_from_string(b"flat")
    dest = tmp_path / "dest"
    download_prefix(gcs_server.bucket, "top/", dest, progress=False)
    assert _read_all(dest) == {"a/b/c.bin": b"deep", "d.bin": b"flat"}


def test_pattern_filters_relative_names(gcs_server, run_tree, tmp_path):
    dest = tmp_path / "dest"
    download_prefix(gcs_server.bucket, PREFIX, dest, pattern="add_count_*", progress=False)
    assert _read_all(dest) == {k: v for k, v in run_tree.items() if k.startswith("add_count_")}


@pytest.mark.parametrize("kept", [0, 1, 1500, 2999])
def test_partial_file_resumes_byte_exact(gcs_server, run_tree, tmp_path, kept, caplog):
    name = "$store$_observation_ckpt.0.gz"
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / (name + ".part")).write_bytes(run_tree[name][:kept])
    with caplog.at_level(logging.INFO, logger="torchrl_ext"):
        download_prefix(gcs_server.bucket, PREFIX, dest, pattern=name, progress=False)
    assert (dest / name).read_bytes() == run_tree[name]
    assert not (dest / (name + ".part")).exists()
    assert "crc32c mismatch" not in caplog.text
    assert (f"from byte {kept} of 3000" in caplog.text) == (kept > 0)


def test_tampered_part_is_detected_and_fetched_again(gcs_server, run_tree, tmp_path, caplog):
    name = "$store$_reward_ckpt.2.gz"
    dest = tmp_path / "dest"
    dest.mkdir()
    wrong = bytes(b ^ 0xFF for b in run_tree[name][:1000])
    (dest / (name + ".part")).write_bytes(wrong)
    with caplog.at_level(logging.WARNING, logger="torchrl_ext"):
        download_prefix(gcs_server.bucket, PREFIX, dest, pattern=name, progress=False)
    assert (dest / name).read_bytes() == run_tree[name]
    assert "crc32c mismatch" in caplog.text


def test_oversized_part_restarts(gcs_server, run_tree, tmp_path):
    name = "add_count_ckpt.0.gz"
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / (name + ".part")).write_bytes(run_tree[name] + b"trailing junk")
    download_prefix(gcs_server.bucket, PREFIX, dest, pattern=name, progress=False)
    assert (dest / name).read_bytes() == run_tree[name]


def test_complete_file_is_skipped(gcs_server, run_tree, tmp_path, caplog):
    name = "add_count_ckpt.0.gz"
    dest = tmp_path / "dest"
    download_prefix(gcs_server.bucket, PREFIX, dest, pattern=name, progress=False)
    mtime = (dest / name).stat().st_mtime_ns
    with caplog.at_level(logging.DEBUG, logger="torchrl_ext"):
        download_prefix(gcs_server.bucket, PREFIX, dest, pattern=name, progress=False)
    assert (dest / name).stat().st_mtime_ns == mtime
    assert "is complete, skipping" in caplog.text


def test_corrupt_final_file_is_replaced(gcs_server, run_tree, tmp_path):
    name = "add_count_ckpt.0.gz"
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / name).write_bytes(b"\0" * len(run_tree[name]))
    download_prefix(gcs_server.bucket, PREFIX, dest, pattern=name, progress=False)
    assert (dest / name).read_bytes() == run_tree[name]


def test_file_crc32c_matches_gcs_encoding(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"123456789")
    # CRC-32C check value of "123456789" is 0xE3069283, big-endian, base64.
    assert file_crc32c(path) == base64.b64encode(bytes.fromhex("e3069283")).decode()


@pytest.mark.parametrize("hostile", ["p//abs/evil", "p/sub\\evil", "p/x\x00y"])
def test_hostile_names_from_the_server_are_refused(gcs_server, tmp_path, hostile):
    bucket = gcs_server.client.bucket(gcs_server.bucket)
    bucket.blob("p/good.bin").upload_from_string(b"good")
    bucket.blob(hostile).upload_from_string(b"evil")
    root = tmp_path / "root"
    dest = root / "dest"
    with pytest.raises(ValueError, match=r"object .* in bucket 'test-bucket' would be written outside"):
        download_prefix(gcs_server.bucket, "p/", dest, progress=False)
    assert [p for p in tmp_path.rglob("*")] == []


@pytest.mark.parametrize("hostile", ["p/../evil", "p/sub/../../evil", "p/./evil"])
def test_dotdot_names_are_refused(gcs_server, tmp_path, hostile):
    bucket = gcs_server.client.bucket(gcs_server.bucket)
    bucket.blob("p/good.bin").upload_from_string(b"good")
    gcs_server.add_listing_alias(gcs_server.bucket, hostile, "p/good.bin")
    dest = tmp_path / "root" / "dest"
    with pytest.raises(ValueError, match=r"object '.*evil' in bucket 'test-bucket' would be written outside"):
        download_prefix(gcs_server.bucket, "p/", dest, progress=False)
    assert [p for p in tmp_path.rglob("*")] == []


def test_missing_bucket_error_names_bucket_and_prefix(gcs_server, tmp_path):
    with pytest.raises(RemoteSourceError, match=r"bucket not found .* gs://no-such-bucket/dqn/Pong/1/replay_logs/.*`bucket=`/`prefix=`.*`local_dir=`"):
        download_atari_run("Pong", 1, tmp_path, bucket="no-such-bucket", progress=False)


def test_empty_prefix_error_names_bucket_and_prefix(gcs_server, tmp_path):
    with pytest.raises(RemoteSourceError, match=r"no objects at gs://test-bucket/dqn/Breakout/5/replay_logs/; .*mirror"):
        download_atari_run("Breakout", 5, tmp_path, bucket=gcs_server.bucket, progress=False)


def test_list_atari_checkpoints(gcs_server, run_tree):
    assert list_atari_checkpoints("Pong", 1, bucket=gcs_server.bucket) == [0, 1, 2]


@pytest.mark.parametrize("checkpoints", [[1], [0, 2]])
def test_download_atari_run_filters_checkpoints(gcs_server, run_tree, tmp_path, checkpoints):
    dest = tmp_path / "replay_logs"
    download_atari_run("Pong", 1, dest, bucket=gcs_server.bucket, checkpoints=checkpoints, progress=False)
    expected = {k: v for k, v in run_tree.items() if int(k.split(".")[-2]) in checkpoints}
    assert len(expected) == 6 * len(checkpoints)
    assert _read_all(dest) == expected


def test_unknown_checkpoint_lists_available(gcs_server, run_tree, tmp_path):
    with pytest.raises(ValueError, match=r"checkpoints \[7\] not found .* available: \[0, 1, 2\]"):
        download_atari_run("Pong", 1, tmp_path, bucket=gcs_server.bucket, checkpoints=[1, 7], progress=False)


@pytest.mark.parametrize(
    ("game", "run", "match"),
    [("../Pong", 1, "`game` must be"), ("Pong", 0, "`run` must be"), ("Pong", "1", "`run` must be")],
)
def test_bad_run_arguments(game, run, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        download_atari_run(game, run, tmp_path, progress=False)


def test_missing_google_cloud_storage_says_how_to_install(gcs_server, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "google.cloud.storage", None)
    with pytest.raises(ImportError, match=r"pip install torchrl-ext\[gcs\]") as info:
        download_prefix("any-bucket", "p/", tmp_path, progress=False)
    assert isinstance(info.value.__cause__, ImportError)
