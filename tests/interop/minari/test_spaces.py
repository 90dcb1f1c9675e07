"""Minari's serialized spaces -> leaves (columns) and back to gymnasium spaces."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from minari.serialization import serialize_space

from torchrl_ext import FormatError
from torchrl_ext.interop.minari import compact, leaves, parse_space, to_gymnasium

SPACES = {
    "box": gym.spaces.Box(-np.inf, np.inf, (2, 3), np.float32),
    "box-bounds": gym.spaces.Box(np.array([0.0, 1.0]), np.array([np.inf, 2.0]), dtype=np.float64),
    "image": gym.spaces.Box(0, 255, (32, 40, 3), np.uint8),
    "discrete": gym.spaces.Discrete(4, start=2),
    "multi-discrete": gym.spaces.MultiDiscrete([3, 4]),
    "multi-binary": gym.spaces.MultiBinary(5),
    "bool-box": gym.spaces.Box(0, 1, (2,), bool),
    "nested": gym.spaces.Dict({"a": gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Box(-1, 1, (1,))))}),
}


@pytest.mark.parametrize("name", sorted(SPACES))
def test_compact_json_builds_the_same_space(name):
    space = SPACES[name]
    spec = compact(parse_space(serialize_space(space), "metadata.json", "observation"))
    assert to_gymnasium(json.loads(json.dumps(spec, allow_nan=False))) == space


@pytest.mark.parametrize("name", sorted(SPACES))
def test_compact_json_parses_back_to_the_same_leaves(name):
    parsed = parse_space(serialize_space(SPACES[name]), "metadata.json", "observation")
    again = parse_space(json.dumps(compact(parsed)), "dataset.json", "observation")
    assert [(k, leaf.kind, leaf.dtype, leaf.shape, leaf.spec) for k, leaf in leaves(again, ("observation",))] == [
        (k, leaf.kind, leaf.dtype, leaf.shape, leaf.spec) for k, leaf in leaves(parsed, ("observation",))]


def test_leaves_are_nested_keys_with_tuple_items_numbered():
    parsed = parse_space(serialize_space(SPACES["nested"]), "metadata.json", "observation")
    assert [(k, leaf.kind, leaf.dtype, leaf.shape) for k, leaf in leaves(parsed, ("observation",))] == [
        (("observation", "a", "0"), "Discrete", "int64", ()), (("observation", "a", "1"), "Box", "float32", (1,))]


def test_image_leaves_follow_minaris_rule():
    image = parse_space(serialize_space(SPACES["image"]), "m", "observation")
    small = parse_space(serialize_space(gym.spaces.Box(0, 255, (16, 40, 3), np.uint8)), "m", "observation")
    assert (image.image, small.image) == (True, False)


def test_uniform_bounds_are_one_number():
    spec = compact(parse_space(serialize_space(SPACES["box"]), "m", "observation"))
    assert (spec["low"], spec["high"], spec["shape"]) == ("-inf", "inf", [2, 3])


@pytest.mark.parametrize(("space", "message"), [
    ({"type": "Box", "dtype": "float32", "shape": [2], "low": [0, 0, 0], "high": 1}, r"bound .* of shape \(2,\)"),
    ({"type": "Box", "dtype": "object", "shape": [2], "low": 0, "high": 1}, r"has dtype 'object', expected one of"),
    ({"type": "Box", "dtype": "uint8", "shape": [1 << 20, 1 << 20], "low": 0, "high": 1}, r"more than 2147483648"),
    ({"type": "Discrete", "n": 0}, r"is a Discrete with n=0"),
    ({"type": "Dict", "subspaces": {}}, r"is an empty Dict"),
    ({"type": "Dict", "subspaces": {"a/b": {"type": "Discrete", "n": 2}}}, r"has an entry named 'a/b'"),
    ({"type": "MultiDiscrete", "nvec": "x"}, r"is a MultiDiscrete with nvec 'x'"),
])
def test_malformed_spaces_are_format_errors(space, message):
    with pytest.raises(FormatError, match=rf"^metadata.json: `observation_space` .*{message}"):
        parse_space(json.dumps(space), "metadata.json", "observation")
