"""torchrl_ext.validation: values returned normalised, one-line errors naming the argument."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from torchrl_ext.validation import (
    int_in_range,
    nonnegative_int,
    one_of,
    positive_int,
    probability,
    regex,
    user_path,
)


@pytest.mark.parametrize("value", [1, 7, np.int64(3), np.uint8(2)])
def test_positive_int_returns_a_python_int(value):
    out = positive_int(value, "n")
    assert out == int(value) and type(out) is int


@pytest.mark.parametrize("value, error, match", [
    (0, ValueError, r"^`n` must be a positive int, got 0$"),
    (-2, ValueError, r"^`n` must be a positive int, got -2$"),
    (1.0, TypeError, r"^`n` must be a positive int, got 1.0 \(float\)$"),
    (True, TypeError, r"^`n` must be a positive int, got True \(bool\)$"),
    ("3", TypeError, r"^`n` must be a positive int, got '3' \(str\)$"),
    (None, TypeError, r"^`n` must be a positive int, got None \(NoneType\)$"),
])
def test_positive_int_errors(value, error, match):
    with pytest.raises(error, match=match):
        positive_int(value, "n")


def test_allow_none_accepts_none_and_says_so():
    assert nonnegative_int(None, "k", allow_none=True) is None
    with pytest.raises(ValueError, match=r"^`k` must be an int >= 0 or None, got -1$"):
        nonnegative_int(-1, "k", allow_none=True)


@pytest.mark.parametrize("lo, hi, value, match", [
    (0, 3, 4, r"^`r` must be an int in \[0, 3\], got 4$"),
    (None, 3, 4, r"^`r` must be an int <= 3, got 4$"),
    (-(2**40), 2**40, 10**20, r"^`r` must be an int in \[-1099511627776, 1099511627776\], got 100000000000000000000$"),
])
def test_int_in_range_bounds(lo, hi, value, match):
    with pytest.raises(ValueError, match=match):
        int_in_range(value, "r", lo, hi)


def test_int_in_range_accepts_the_bounds():
    assert (int_in_range(0, "r", 0, 3), int_in_range(3, "r", 0, 3)) == (0, 3)


@pytest.mark.parametrize("value, error, match", [
    (1.5, ValueError, r"^`p` must be in \[0, 1\], got 1.5$"),
    (float("nan"), ValueError, r"^`p` must be in \[0, 1\], got nan$"),
    ("0.5", TypeError, r"^`p` must be in \[0, 1\] \(a float\), got '0.5' \(str\)$"),
])
def test_probability_errors(value, error, match):
    with pytest.raises(error, match=match):
        probability(value, "p")


def test_probability_returns_a_float():
    assert probability(1, "p") == 1.0 and type(probability(np.float32(0.5), "p")) is float


def test_one_of_lists_the_choices():
    assert one_of(None, "split", (None, "train")) is None
    with pytest.raises(ValueError, match=r"^`split` must be one of \(None, 'train'\), got 'test'$"):
        one_of("test", "split", (None, "train"))


def test_one_of_refuses_unhashable_values_against_a_set():
    with pytest.raises(ValueError, match=r"^`mode` must be one of"):
        one_of([], "mode", {"a", "b"})


def test_regex_compiles():
    assert regex("a.c", "pattern").match("abc")


@pytest.mark.parametrize("pattern, error, match", [
    ("a(", ValueError, r"^`pattern` must be a valid Python regular expression, got 'a\(' \(missing \), "),
    (re.compile("a"), TypeError, r"^`pattern` must be a str holding a Python regular expression"),
])
def test_regex_errors(pattern, error, match):
    with pytest.raises(error, match=match):
        regex(pattern, "pattern")


@pytest.mark.parametrize("given, expected", [
    ("~", "{home}"),
    ("~/data/atari", "{home}/data/atari"),
    (Path("~/d"), "{home}/d"),
    ("runs/~/d", "runs/~/d"),  # only a leading ~ is the home directory
    ("runs/d", "runs/d"),
    ("/srv/d", "/srv/d"),
], ids=["home", "under home", "PathLike", "inner tilde", "relative", "absolute"])
def test_user_path_expands_a_leading_tilde_only(tmp_path, monkeypatch, given, expected):
    monkeypatch.setenv("HOME", str(tmp_path))
    out = user_path(given, "root")
    assert isinstance(out, Path) and out == Path(expected.format(home=tmp_path))


def test_user_path_keeps_relative_paths_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not user_path("d", "root").is_absolute() and os.fspath(user_path("./d", "root")) == "d"


@pytest.mark.parametrize("value, match", [
    (3, r"^`root` must be a path \(str or os.PathLike\), got int$"),
    (b"~/d", r"^`root` must be a path \(str or os.PathLike\), got bytes$"),
    (None, r"^`root` must be a path \(str or os.PathLike\), got NoneType$"),
])
def test_user_path_refuses_what_is_not_a_path(value, match):
    with pytest.raises(TypeError, match=match):
        user_path(value, "root")
