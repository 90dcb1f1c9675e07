"""Hostile replay-log files: each is one `FormatError` naming the file, raised quickly and before allocating."""

from __future__ import annotations

import gzip
import io
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_same_datasets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from interop.atari_dqn.replay_logs_maker import make_replay_logs, npy_bytes, save_raw
from refusals import assert_refused

from torchrl_ext import FormatError
from torchrl_ext.interop.atari_dqn import LocalReplayLogs, convert_replay_logs

C = 60
FRAME = (2, 2)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    base = tmp_path_factory.mktemp("logs")
    rec = make_replay_logs(base, capacity=C, num_episodes=8, mean_len=20, obs_shape=FRAME, seed=1)
    assert len(rec.logs) == 4  # three regular logs and batch_rl's final one
    return base


@pytest.fixture
def src(made, tmp_path):
    shutil.copytree(made, tmp_path / "src")
    return tmp_path / "src"


def _convert(src, root, **kw):
    return convert_replay_logs(src, root, progress=False, encodings={"observation": "raw"}, **kw)


def _arr(value) -> bytes:
    buf = io.BytesIO()
    np.save(buf, value, allow_pickle=False)
    return buf.getvalue()


def _header(descr: str, shape: str) -> str:
    return f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}\n"


OBS0, OBS1 = "$store$_observation_ckpt.0.gz", "$store$_observation_ckpt.1.gz"
CASES = [
    # add_count: an integer scalar in 0 .. 2**62
    ("add-count-uint64-max", "add_count_ckpt.1.gz", _arr(np.array(2**64 - 1, np.uint64)),
     r"expected an integer scalar in 0\.\.4611686018427387904, found uint64 18446744073709551615"),
    ("add-count-negative", "add_count_ckpt.1.gz", _arr(np.array(-5, np.int64)), r"found int64 -5"),
    ("add-count-float", "add_count_ckpt.0.gz", _arr(np.array(3.0)), r"found float64 3\.0"),
    ("add-count-array", "add_count_ckpt.0.gz", _arr(np.array([5])), r"expected a 0-d array, found shape \(1,\)"),
    ("add-count-object", "add_count_ckpt.0.gz", npy_bytes(_header("|O", "()")), r"dtype '\|O', expected plain numbers"),
    ("add-count-structured", "add_count_ckpt.0.gz",
     npy_bytes("{'descr': [('a', '<i8')], 'fortran_order': False, 'shape': (), }\n"), r"npy header is not a dict"),
    ("add-count-lying-length", "add_count_ckpt.0.gz", npy_bytes(_header("<i8", "()"), length=12, payload=bytes(8)),
     r"npy header is not a dict"),
    ("add-count-unterminated", "add_count_ckpt.0.gz", npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': ("),
     r"found the end of the header"),
    ("add-count-not-a-dict", "add_count_ckpt.0.gz", npy_bytes("[5]\n"), r"unexpected '\[5\]"),
    ("add-count-empty", "add_count_ckpt.0.gz", b"", r"magic string is not correct"),
    # invalid_range: 1 to 1024 consecutive rows in [0, C)
    ("invalid-range-2d", "invalid_range_ckpt.0.gz", _arr(np.zeros((2, 3), np.int64)),
     r"expected a 1-d array, found shape \(2, 3\)"),
    ("invalid-range-out-of-range", "invalid_range_ckpt.1.gz", _arr(np.arange(C, C + 5)),
     r"expected 1 to 1024 consecutive row indices in \[0, 60\), found int64 \[60 61 62 63 64\]"),
    ("invalid-range-empty", "invalid_range_ckpt.1.gz", _arr(np.zeros(0, np.int64)), r"found int64 \[\]"),
    ("invalid-range-scattered", "invalid_range_ckpt.1.gz", _arr(np.array([1, 5, 9])), r"found int64 \[1 5 9\]"),
    ("invalid-range-wide-values", "invalid_range_ckpt.1.gz", _arr(np.arange(40) * 10**17),
     r"found int64 \[\s*0\s+100000000000000000 .* 3900000000000000000\]"),
    ("invalid-range-float", "invalid_range_ckpt.1.gz", _arr(np.arange(5.0)), r"found float64"),
    ("invalid-range-long", "invalid_range_ckpt.1.gz", _arr(np.arange(2000) % C),
     r"promises 16000 bytes .* expected at most 8192"),
    ("invalid-range-negative-shape", "invalid_range_ckpt.1.gz", npy_bytes(_header("<i8", "(-5,)")),
     r"shape \(-5,\), expected a tuple of at most 64 non-negative ints"),
    # terminal: its length is the run's capacity
    ("terminal-empty", "$store$_terminal_ckpt.0.gz", _arr(np.zeros(0, np.uint8)), r"holds 0 rows"),
    ("terminal-huge-in-tiny-file", "$store$_terminal_ckpt.0.gz", npy_bytes(_header("|u1", "(10000000,)")),
     r"promises 10000000 bytes .* more than \d+ compressed bytes can hold"),
    ("terminal-over-capacity-cap", "$store$_terminal_ckpt.0.gz", npy_bytes(_header("|u1", "(1000000000,)")),
     r"expected at most 100000000"),
    ("terminal-overflowing-shape", "$store$_terminal_ckpt.0.gz", npy_bytes(_header("|u1", f"({2**62}, 4)")),
     (r"promises 18446744073709551616 bytes \(shape \(4611686018427387904, 4\), uint8\), "
      r"expected at most 1099511627776")),
    ("terminal-negative-shape", "$store$_terminal_ckpt.0.gz", npy_bytes(_header("|u1", "(-60,)")),
     r"shape \(-60,\), expected a tuple"),
    ("terminal-short", "$store$_terminal_ckpt.1.gz", _arr(np.zeros(C - 1, np.uint8)),
     r"59 rows, expected 60, the run's capacity"),
    # action, reward
    ("action-truncated", "$store$_action_ckpt.1.gz", npy_bytes(_header("<i4", f"({C},)"), payload=bytes(100)),
     r"truncated npy payload: expected 240 bytes for shape \(60,\), found 100"),
    ("action-trailing", "$store$_action_ckpt.1.gz", _arr(np.zeros(C, np.int32)) + b"\x00",
     r"unexpected data after the npy payload"),
    ("action-long", "$store$_action_ckpt.1.gz", _arr(np.zeros(C + 1, np.int32)), r"expected at most 240"),
    ("action-big-endian", "$store$_action_ckpt.1.gz", _arr(np.zeros(C, ">i4")), r"expected dtype int32, found >i4"),
    ("reward-2d", "$store$_reward_ckpt.0.gz", _arr(np.zeros((C, 1), np.float32)), r"expected a 1-d array"),
    # observation: uint8 [C, H, W], frames of 1 byte to 1 MiB, the same in every checkpoint
    ("obs-huge-frames", OBS0, npy_bytes(_header("|u1", f"({C}, 10000, 10000)")),
     r"promises 6000000000 bytes .* expected at most 62914560"),
    ("obs-huge-in-tiny-file", OBS0, npy_bytes(_header("|u1", f"({C}, 1000, 1000)")),
     r"promises 60000000 bytes .* compressed bytes can hold"),
    ("obs-empty-frames", OBS0, _arr(np.zeros((C, 0, 2), np.uint8)), r"frames of shape \(0, 2\), expected 1 to 1048576"),
    ("obs-rows", OBS0, _arr(np.zeros((C - 1, *FRAME), np.uint8)), r"59 frames, expected 60"),
    ("obs-frame-changes", OBS1, _arr(np.zeros((C, 3, 3), np.uint8)),
     r"frames of shape \(3, 3\), earlier checkpoints have \(2, 2\)"),
    ("obs-truncated", OBS1, npy_bytes(_header("|u1", f"({C}, 2, 2)"), payload=bytes(100)),
     r"truncated npy payload: expected 240 bytes"),
    ("obs-negative-shape", OBS0, npy_bytes(_header("|u1", f"({C}, -2, 2)")), r"shape \(60, -2, 2\), expected"),
    ("obs-fortran", OBS0, _arr(np.asfortranarray(np.zeros((C, 2, 3), np.uint8))), r"Fortran-ordered arrays"),
]


@pytest.mark.parametrize("name, data, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_file_is_one_format_error_naming_it(src, tmp_path, name, data, message):
    path = src / "replay_logs" / name
    save_raw(path, data)
    assert_refused(lambda: _convert(src, tmp_path / "ds"), rf"^{re.escape(str(path))}: .*{message}")


def test_damaged_gzip_names_the_file(src, tmp_path):
    path = src / "replay_logs" / OBS1
    path.write_bytes(path.read_bytes()[:-20])
    assert_refused(lambda: _convert(src, tmp_path / "ds"),
                   rf"^{re.escape(str(path))}: (not a valid gzip stream|truncated npy payload)")


@pytest.mark.parametrize("index", ["99999999999", "1000001", "007"])
def test_implausible_checkpoint_number_is_refused(src, tmp_path, index):
    path = src / "replay_logs" / f"$store$_observation_ckpt.{index}.gz"
    shutil.copy(src / "replay_logs" / OBS0, path)
    assert_refused(lambda: _convert(src, tmp_path / "ds"),
                   rf"^{re.escape(str(path))}: checkpoint number {index}, expected 0\.\.1000000 without leading zeros")


class _Unseekable(io.RawIOBase):
    def __init__(self, f) -> None:
        self._f = f

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        return self._f.readinto(b)

    def close(self) -> None:
        self._f.close()
        super().close()


class _Streamed(LocalReplayLogs):
    """Files as a bucket serves them: streams that cannot seek, sizes from the listing."""

    def open(self, name):
        return io.BufferedReader(_Unseekable(super().open(name)))

    def size(self, name):
        return (self.dir / name).stat().st_size


def test_stream_of_listed_size_is_bounded_by_it(src, tmp_path):
    path = src / "replay_logs" / OBS0
    save_raw(path, npy_bytes(_header("|u1", f"({C}, 1000, 1000)")))
    assert_refused(lambda: _convert(_Streamed(src), tmp_path / "ds"),
                   rf"^{re.escape(str(path))}: npy header promises 60000000 bytes .* compressed bytes can hold")


def test_streamed_logs_still_convert(made, tmp_path):
    _convert(_Streamed(made), tmp_path / "a")
    _convert(made, tmp_path / "b")
    assert_same_datasets(tmp_path / "a", tmp_path / "b")


# ---------------------------------------------------------------------- any damage to any file
NAMES = [f"{prefix}_ckpt.{i}.gz" for i in range(4) for prefix in
         ("$store$_observation", "$store$_action", "$store$_reward", "$store$_terminal", "add_count", "invalid_range")]
DTYPES = ["|u1", "<i4", "<i8", "<f4", "<u8", ">i4", "|b1", "<f8"]


@st.composite
def damage(draw) -> tuple[str, str, object]:
    """One file and what happens to it: random bytes, another array, flipped bytes, other values."""
    name = draw(st.sampled_from(NAMES))
    kind = draw(st.sampled_from(["bytes", "array", "flip", "values", "scalar"]))
    if kind == "bytes":
        return name, kind, draw(st.binary(max_size=200).map(lambda b: b"\x93NUMPY\x01\x00" + b))
    if kind == "array":
        shape = draw(st.lists(st.sampled_from([0, 1, 2, 3, C - 1, C, C + 1]), max_size=3))
        return name, kind, (draw(st.sampled_from(DTYPES)), tuple(shape), draw(st.integers(0, 2**32 - 1)))
    if kind == "flip":
        return name, kind, draw(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=3))
    if kind == "values":
        return name, kind, draw(st.integers(0, 2**32 - 1))
    return name, kind, draw(st.integers(-2**63, 2**64 - 1))


def _damaged(original: bytes, kind: str, arg) -> bytes:
    if kind == "bytes":
        return arg
    if kind == "array":
        dtype, shape, seed = arg
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return _arr(np.random.default_rng(seed).integers(0, 256, size, np.uint8).view(dtype).reshape(shape))
    if kind == "flip":
        data = bytearray(original)
        for at, value in arg:
            data[at % len(data)] = value
        return bytes(data)
    old = np.load(io.BytesIO(original), allow_pickle=False)
    if kind == "values":  # the same record, other values: tests the timeline and the episode rules
        rng = np.random.default_rng(arg)
        high = 4 * C if old.ndim == 0 else 3
        return _arr(rng.integers(0, high, old.shape).astype(old.dtype))
    return _arr(np.array(arg, np.uint64 if arg >= 2**63 else np.int64))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hurt=damage())
def test_any_damage_converts_or_is_one_format_error(made, hurt):
    name, kind, arg = hurt
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(made, src)
        path = src / "replay_logs" / name
        save_raw(path, _damaged(gzip.decompress(path.read_bytes()), kind, arg))
        try:
            _convert(src, Path(tmp) / "ds")
        except FormatError as err:
            assert str(err).startswith(str(src / "replay_logs")) and "\n" not in str(err)
