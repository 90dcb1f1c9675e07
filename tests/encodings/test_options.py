"""Encoding options: JSON round trips, validation, registry errors, column checks."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

from torchrl_ext.encodings import KNOWN_ENCODINGS, Raw, Video, Zstd, check_column, resolve_encoding


@pytest.mark.parametrize(
    "options",
    [Raw(), Zstd(), Zstd(chunk_rows=1, level=-5, dictionary=True), Video(), Video(crf=0, gop=1, pix_fmt="gbrp")],
)
def test_json_round_trip(options):
    assert resolve_encoding(options.to_json()) == options


@pytest.mark.parametrize(
    ("name", "expected"), [("raw", Raw()), ("zstd", Zstd(16, 1, False)), ("video", Video("h264", 18, 32, "yuv444p"))]
)
def test_resolve_by_name(name, expected):
    assert resolve_encoding(name) == expected


def test_zstd_json_fields():
    assert Zstd(chunk_rows=4).to_json() == {"name": "zstd", "chunk_rows": 4, "level": 1, "dictionary": False}


def test_video_defaults_per_codec():
    assert (Video().pix_fmt, Video().preset) == ("yuv444p", "veryfast")
    assert (Video(codec="av1").pix_fmt, Video(codec="av1").preset) == ("yuv420p", "10")


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Zstd(chunk_rows=0), "`chunk_rows` must be an int"),
        (lambda: Zstd(chunk_rows=2.0), "`chunk_rows` must be an int"),
        (lambda: Zstd(chunk_rows=True), "`chunk_rows` must be an int"),
        (lambda: Zstd(level=23), "`level` must be an int"),
        (lambda: Zstd(dictionary=1), "`dictionary` must be a bool"),
        (lambda: Video(codec="vp9"), "`codec` must be one of"),
        (lambda: Video(crf=-1), r"`crf` must be an int in \[0, 51\]"),
        (lambda: Video(codec="av1", crf=64), r"`crf` must be an int in \[0, 63\]"),
        (lambda: Video(gop=0), "`gop` must be an int"),
        (lambda: Video(pix_fmt="rgb24"), "`pix_fmt` must be one of"),
        (lambda: Video(codec="av1", pix_fmt="yuv444p"), "`pix_fmt` must be one of"),
        (lambda: Video(preset="quick"), "`preset` must be one of"),
        (lambda: Video(codec="av1", preset="veryfast"), "`preset` must be a string"),
    ],
)
def test_bad_options(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_unknown_name_lists_known():
    with pytest.raises(ValueError, match=r"unknown encoding 'lz4'; known encodings are \('raw', 'zstd', 'video'\)"):
        resolve_encoding("lz4")
    assert KNOWN_ENCODINGS == ("raw", "zstd", "video")


def test_unknown_name_in_dict():
    with pytest.raises(ValueError, match="unknown encoding 'png'"):
        resolve_encoding({"name": "png"})


def test_unknown_field_in_dict():
    with pytest.raises(ValueError, match=r"encoding 'zstd' has no field\(s\) \['crf'\]"):
        resolve_encoding({"name": "zstd", "crf": 3})


def test_bad_spec_type():
    with pytest.raises(TypeError, match="`spec` must be an encoding name"):
        resolve_encoding(3)


def test_missing_av_says_pip_install(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "av" or name.startswith("av."):
            raise ImportError("No module named 'av'", name="av")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(__import__("sys").modules, "torchrl_ext.encodings.video_codec", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install torchrl-ext\[video\]") as info:
        resolve_encoding("video")
    assert isinstance(info.value.__cause__, ImportError)


@pytest.mark.parametrize("dtype", ["bool", "uint8", "int64", "float16", "float64"])
@pytest.mark.parametrize("shape", [(), (3,), (2, 3, 4)])
def test_zstd_accepts_any_column(dtype, shape):
    check_column(Zstd(), dtype, shape)


@pytest.mark.parametrize("shape", [(84, 84), (84, 84, 1), (210, 160, 3), (5, 7)])
def test_video_accepts_frames(shape):
    check_column(Video(), np.uint8, shape)


@pytest.mark.parametrize(
    ("dtype", "shape", "match"),
    [
        ("float32", (84, 84), "needs uint8 frames, got dtype float32"),
        ("uint8", (), r"needs frames of shape \(H, W\)"),
        ("uint8", (84,), r"needs frames of shape \(H, W\)"),
        ("uint8", (84, 84, 4), r"needs frames of shape \(H, W\)"),
        ("uint8", (4, 84, 84), r"needs frames of shape \(H, W\)"),
        ("uint8", (0, 84), r"needs frames of shape \(H, W\)"),
    ],
)
def test_video_refuses_non_frames(dtype, shape, match):
    with pytest.raises(ValueError, match=match):
        check_column(Video(), dtype, shape)


def test_yuv420_needs_even_rgb_frames():
    with pytest.raises(ValueError, match="needs an even frame height and width"):
        check_column(Video(pix_fmt="yuv420p"), "uint8", (5, 8, 3))
    check_column(Video(pix_fmt="yuv420p"), "uint8", (5, 7))
