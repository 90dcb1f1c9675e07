"""JSON from elsewhere: nesting counted before parsing, and parsing never taken to the recursion limit.

A document nested to the interpreter's recursion limit used to be parsed until
``RecursionError``. A garbage collection at that depth runs finalizers with no
stack left: multiprocessing's finalizer of a ``Value`` (TorchRL's storages hold
several) then failed half-way, its error swallowed, and the shared-memory heap
was left inconsistent, so a later ``multiprocessing.Value`` raised a ``KeyError``
from ``Heap._malloc`` in an unrelated test.
"""

from __future__ import annotations

import ctypes
import gc
import itertools
import json
import multiprocessing
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torchrl_ext.format import MANIFEST_NAME, FormatError, read_manifest
from torchrl_ext.format.files import (
    MAX_JSON_DEPTH,
    json_depth,
    loads_json,
    read_json_object,
)

HOSTILE = "[" * 2_000  # deeper than the recursion limit lets json.loads go


def reference_depth(text: str) -> int:
    """Character by character: the deepest bracket outside strings."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def nesting(value: object) -> int:
    """How deep lists and dicts nest in a parsed value."""
    if isinstance(value, list):
        return 1 + max(map(nesting, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(nesting, value.values()), default=0)
    return 0


STRING_PART = st.sampled_from(["a", "é", "[", "]", "{", "}", ",", "\\\\", '\\"', "\\n", "\\u005b", "\\/"])
STRING = st.builds(lambda parts: '"' + "".join(parts), st.lists(STRING_PART, max_size=6))  # unterminated
TOKENS = st.builds(lambda tokens, last: "".join(tokens) + last,  # backslashes only in strings, as in JSON
                   st.lists(st.one_of(st.sampled_from(["[", "]", "{", "}", ",", ":", "1", " "]),
                                      STRING.map(lambda s: s + '"')), max_size=60),
                   st.one_of(st.just(""), STRING))
VALUES = st.recursive(st.one_of(st.integers(), st.text(alphabet='ab[]{}"\\é', max_size=5)),
                      lambda inner: st.one_of(st.lists(inner, max_size=3),
                                              st.dictionaries(st.text(alphabet='k[]"\\', max_size=3), inner,
                                                              max_size=3)),
                      max_leaves=30)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(text=TOKENS, block=st.sampled_from([1, 2, 7, 1 << 20]))
def test_depth_equals_a_character_by_character_count(text, block):
    assert json_depth(text, block=block) == reference_depth(text)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(value=VALUES, block=st.sampled_from([1, 5, 1 << 20]))
def test_depth_of_a_json_document_is_how_deep_its_value_nests(value, block):
    text = json.dumps(value, ensure_ascii=False)
    assert json_depth(text, block=block) == nesting(value)
    assert loads_json(text.encode("utf-16")) == value  # bytes in any encoding json.loads detects


def test_nesting_up_to_the_bound_parses_and_beyond_is_refused():
    deepest = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    value = loads_json(deepest)
    assert nesting(value) == MAX_JSON_DEPTH and json.dumps(value) == deepest
    assert loads_json('{"a": "' + "[" * 500 + '"}') == {"a": "[" * 500}  # brackets in a string do not nest
    with pytest.raises(ValueError, match=rf"arrays and objects nest {MAX_JSON_DEPTH + 1} deep; expected at most "
                                         rf"{MAX_JSON_DEPTH} levels"):
        loads_json("[" * (MAX_JSON_DEPTH + 1))
    with pytest.raises(ValueError, match=r"arrays and objects nest 3 deep; expected at most 2 levels"):
        loads_json(b'{"a": [[1]]}', max_depth=2)


def _read_json_object(root):
    with pytest.raises(FormatError, match=r"meta\.json: not valid JSON here \(arrays and objects nest 2000 deep; "
                                          r"expected at most 100 levels\); expected TensorDict metadata"):
        read_json_object(root, root / "meta.json", max_bytes=1 << 20, expected="TensorDict metadata")


def _read_manifest(root):
    with pytest.raises(FormatError, match=r"expected a JSON manifest, could not parse it \(arrays and objects nest "
                                          r"2000 deep"):
        read_manifest(root)


@pytest.mark.parametrize("read", [_read_json_object, _read_manifest], ids=["read_json_object", "read_manifest"])
def test_a_deeply_nested_file_leaves_multiprocessing_values_intact(tmp_path, monkeypatch, read):
    # Before each read, finalizers of multiprocessing Values become due (cycles, freed by the collector), and
    # the next collection is set to run after `offset` allocations: some offset puts it inside the parse, at
    # every depth the parse reaches. No finalizer may fail, and the heap must hand out sound Values after.
    (tmp_path / "meta.json").write_text(HOSTILE)
    (tmp_path / MANIFEST_NAME).write_text(HOSTILE)
    failed = []
    monkeypatch.setattr(sys, "unraisablehook", failed.append)
    thresholds, enabled = gc.get_threshold(), gc.isenabled()
    gc.enable()
    try:
        for offset in range(1, sys.getrecursionlimit() + 1):
            gc.collect(0)
            for i in range(4):
                cycle = {"value": multiprocessing.RawValue("q", i)}
                cycle["self"] = cycle
            del cycle
            gc.set_threshold(gc.get_count()[0] + offset)
            read(tmp_path)
            gc.set_threshold(*thresholds)
    finally:
        gc.set_threshold(*thresholds)
        if not enabled:
            gc.disable()
    assert [(f.exc_type, str(f.object)) for f in failed] == []
    values = [multiprocessing.RawValue("q", 1_000 + i) for i in range(600)]  # more than one page of blocks
    assert [v.value for v in values] == list(range(1_000, 1_600))
    spans = sorted((ctypes.addressof(v), ctypes.addressof(v) + ctypes.sizeof(v)) for v in values)
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans)), "two Values share memory"
