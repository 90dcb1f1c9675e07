"""WindowQuery: every rule validated once, at construction; the keyword form builds the same query."""

from __future__ import annotations

import pytest

from torchrl_ext.events import WindowQuery
from torchrl_ext.events.query import MAX_STEPS, query_from


@pytest.mark.parametrize("kw, msg", [
    ({"win_len": 0}, "`win_len` must be a positive int, got 0"),
    ({"edge": "wrap"}, "`edge` must be one of"),
    ({"split_ratio": 1.5}, r"`split_ratio` must be in \[0, 1\]"),
    ({"min_nearby": -1}, "`min_nearby` must be an int >= 0 or None"),
    ({"bias": 10**20}, r"`bias` must be an int in \[-1099511627776, 1099511627776\], got 100000000000000000000"),
    ({"min_step": MAX_STEPS + 1}, r"`min_step` must be <= 1099511627776 \(a step count\)"),
    ({"win_len": 1 << 30, "skip_frame": 1 << 20}, r"`win_len` \* `skip_frame` must be <= 1099511627776"),
    ({"event_regex": "a("}, r"`event_regex` must be a valid Python regular expression, got 'a\('"),
    ({"split": "test"}, r"`split` must be one of \(None, 'train', 'val'\), got 'test'"),
    ({"seed": -1}, r"`seed` must be an int in \[0, 9223372036854775807\], got -1"),
])
def test_out_of_range_values_are_value_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        WindowQuery(**kw)


@pytest.mark.parametrize("kw, msg", [
    ({"win_len": 2.0}, r"`win_len` must be a positive int, got 2.0 \(float\)"),
    ({"win_len": True}, r"`win_len` must be a positive int, got True \(bool\)"),
    ({"event_regex": 3}, r"`event_regex` must be a str holding a Python regular expression, got 3"),
    ({"split_ratio": "0.5"}, r"`split_ratio` must be in \[0, 1\] \(a float\), got '0.5'"),
    ({"minestudio_start": 1}, r"`minestudio_start` must be a bool, got 1"),
])
def test_wrong_types_are_type_errors(kw, msg):
    with pytest.raises(TypeError, match=msg):
        WindowQuery(**kw)


def test_minestudio_preset_defaults():
    q = WindowQuery.minestudio(win_len=8)
    assert (q.edge, q.min_step, q.split_mode, q.minestudio_start) == ("shift", 128, "minestudio", True)


def test_from_options_none_keeps_preset_defaults():
    assert WindowQuery.from_options("minestudio", win_len=8, edge=None, min_step=None) == WindowQuery.minestudio(
        win_len=8)


def test_from_options_refuses_unknown_options():
    with pytest.raises(TypeError, match=r"unknown window option\(s\) \['win_length'\]; window options are \["):
        WindowQuery.from_options(win_length=4)


def test_from_options_refuses_unknown_compat():
    with pytest.raises(ValueError, match=r"`compat` must be one of \(None, 'minestudio'\), got 'ms'"):
        WindowQuery.from_options("ms", win_len=4)


def test_query_from_keyword_form_equals_the_query():
    assert query_from(None, {"win_len": 4, "bias": 1}, owner="X") == WindowQuery(win_len=4, bias=1)


def test_query_from_refuses_both_forms():
    with pytest.raises(TypeError, match=r"X: pass the window rules either as `query=` or as keyword options, not "
                                        r"both; got `query` and \['bias'\]"):
        query_from(WindowQuery(win_len=4), {"bias": 1}, owner="X")


def test_query_from_needs_win_len_in_keyword_form():
    with pytest.raises(TypeError, match=r"X needs `query=WindowQuery\(\.\.\.\)` or window options with at least "
                                        r"`win_len=`"):
        query_from(None, {"bias": 1}, owner="X")


def test_query_from_refuses_a_non_query():
    with pytest.raises(TypeError, match="`query` must be a WindowQuery, got dict"):
        query_from({"win_len": 4}, {}, owner="X")
