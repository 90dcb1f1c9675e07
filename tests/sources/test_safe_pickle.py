"""The restricted unpickler: plain data loads, anything that could run code is refused unrun."""

from __future__ import annotations

import datetime
import io
import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest

from torchrl_ext import FormatError
from torchrl_ext.sources.safe_pickle import UnsafePickleError, safe_loads


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_plain_data_round_trips(protocol):
    value = {
        "image": np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3),
        "ram": [1, 2, 3], "score": np.float32(1.5), "ids": (np.int64(7), "game_0>player_0"),
        "when": datetime.datetime(2021, 5, 1, 12, 30), "tags": {"a", "b"}, "raw": b"\x00\xff",
        "order": OrderedDict(x=1), "none": None, "flag": True,
    }
    out = safe_loads(pickle.dumps(value, protocol=protocol), "t.pkl")
    assert np.array_equal(out["image"], value["image"]) and out["image"].dtype == np.uint8
    assert {k: v for k, v in out.items() if k != "image"} == {k: v for k, v in value.items() if k != "image"}


class _Reduce:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


@pytest.mark.parametrize("fn, args", [(os.system, ("touch {flag}",)), (eval, ("open('{flag}', 'w')",)),
                                      (__import__, ("os",))])
def test_code_is_refused_without_running(tmp_path, fn, args):
    flag = tmp_path / "ran"
    payload = pickle.dumps({"ok": 1, "bad": _Reduce(fn, tuple(a.format(flag=flag) if isinstance(a, str) else a
                                                            for a in args))})
    with pytest.raises(UnsafePickleError, match=r"traj.pkl: the pickle asks for .*refused without running it"):
        safe_loads(payload, "traj.pkl")
    assert not flag.exists()


def test_truncated_pickle_is_a_format_error():
    data = pickle.dumps({"a": np.zeros(100)})
    with pytest.raises(FormatError, match=r"x.pkl: not a readable pickle of plain data .* truncated, corrupt or hostile"):
        safe_loads(data[: len(data) // 2], "x.pkl")


def test_torch_tensors_load_on_the_cpu():
    torch = pytest.importorskip("torch")
    value = {"buttons": torch.tensor([5]), "camera": torch.arange(6.0).reshape(2, 3)[:, 1]}
    out = safe_loads(pickle.dumps([value, value]), "action.pkl")
    assert torch.equal(out[1]["buttons"], value["buttons"]) and torch.equal(out[0]["camera"], value["camera"])


def test_tensor_storage_holding_code_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    flag = tmp_path / "flag"
    blob = io.BytesIO()
    torch.save(_Reduce(os.system, (f"touch {flag}",)), blob)

    class _Storage:
        def __reduce__(self):
            return (torch.storage._load_from_bytes, (blob.getvalue(),))

    with pytest.raises(FormatError, match=r"tensor storage refused by torch.load\(weights_only=True\)"):
        safe_loads(pickle.dumps(_Storage()), "action.pkl")
    assert not flag.exists()
