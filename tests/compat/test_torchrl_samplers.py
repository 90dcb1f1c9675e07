"""Contract of torchrl_ext.compat.torchrl_samplers with the installed TorchRL.

Each test states one private name or behaviour of TorchRL that ``SamplerBase``
relies on. A failure after a TorchRL upgrade means that point changed: update
``torchrl_ext/compat/torchrl_samplers.py`` (and only it), then this test.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, ReplayBuffer, TensorDictReplayBuffer
from torchrl.data.replay_buffers.samplers import Sampler

from torchrl_ext.compat.torchrl_samplers import SamplerBase

FIX = "update torchrl_ext/compat/torchrl_samplers.py"


class Probe(SamplerBase):
    """Records the calls TorchRL makes; samples the first ``batch_size`` rows."""

    def __init__(self, *, replacement: bool = True, count: int = 5) -> None:
        self.replacement = replacement
        self.count = count
        self.resets = 0

    def sample(self, storage, batch_size):
        info = {"probe": torch.full((batch_size,), 7), ("nested", "x"): torch.ones(batch_size)}
        return torch.arange(batch_size), info

    def sampleable_count(self, storage, batch_size):
        return self.count

    def reset(self):
        self.resets += 1

    def state_dict(self):
        return {}

    def load_state_dict(self, state_dict):
        pass

    def dumps(self, path):
        pass

    def loads(self, path):
        pass


def filled_buffer(sampler, cls=TensorDictReplayBuffer):
    rb = cls(storage=LazyTensorStorage(10), sampler=sampler, batch_size=4)
    rb.extend(TensorDict({"obs": torch.arange(10)}, batch_size=[10]))
    return rb


def test_sampler_metaclass_is_an_abcmeta_with_a_call_override():
    meta = type(Sampler)
    assert issubclass(meta, type) and "__call__" in vars(meta), (
        f"TorchRL's Sampler metaclass is {meta!r} without its own __call__; the `replacement=` dispatch that "
        f"SamplerBase bypasses has moved or gone: {FIX}")


def test_torchrl_metaclass_pops_replacement():
    class Plain(Sampler):  # TorchRL's own metaclass
        def __init__(self, **kwargs):
            self.kwargs = kwargs

        sample = state_dict = load_state_dict = _empty = dumps = loads = lambda self, *a: None

    received = Plain(replacement=True).kwargs
    assert received == {}, (f"TorchRL's Sampler metaclass no longer pops `replacement=` (the constructor got "
                            f"{received}); SamplerBase's metaclass may be unnecessary: {FIX}")


def test_samplerbase_constructor_receives_replacement():
    probe = Probe(replacement=False)
    assert type(probe) is Probe and probe.replacement is False, (
        f"SamplerBase subclasses no longer receive `replacement=` untouched: {FIX}")


def test_abstract_methods_are_the_ones_samplerbase_expects():
    expected = {"sample", "state_dict", "load_state_dict", "_empty", "dumps", "loads"}
    assert set(Sampler.__abstractmethods__) == expected, (
        f"TorchRL's Sampler abstract methods are now {sorted(Sampler.__abstractmethods__)}, expected "
        f"{sorted(expected)}: {FIX}")


def test_can_sample_consults_sampleable_count():
    src = inspect.getsource(Sampler.can_sample)
    assert "_sampleable_count" in src, f"Sampler.can_sample no longer calls _sampleable_count: {FIX}"
    rb = filled_buffer(Probe(count=0))
    assert rb.can_sample() is False, f"ReplayBuffer.can_sample ignores the sampler's sampleable_count: {FIX}"
    rb.sampler.count = 3
    assert rb.can_sample() is True, f"ReplayBuffer.can_sample ignores the sampler's sampleable_count: {FIX}"


def test_buffer_empty_calls_the_sampler_reset():
    rb = filled_buffer(Probe())
    rb.empty()
    assert rb.sampler.resets == 1, f"ReplayBuffer.empty() no longer calls sampler._empty(): {FIX}"


def test_tensordict_buffer_sets_every_info_key_on_the_batch():
    batch = filled_buffer(Probe()).sample()
    assert batch["probe"].tolist() == [7] * 4 and batch["nested", "x"].tolist() == [1.0] * 4, (
        "TensorDictReplayBuffer.sample no longer merges the sampler's info into the batch; EventSliceSampler's "
        f"mask and event keys rely on it: {FIX}")


@pytest.mark.parametrize("cls", [ReplayBuffer, TensorDictReplayBuffer])
def test_buffer_passes_its_storage_and_batch_size(cls):
    calls = []

    class Recorder(Probe):
        def sample(self, storage, batch_size):
            calls.append((type(storage).__name__, batch_size))
            return super().sample(storage, batch_size)

    filled_buffer(Recorder(), cls).sample()
    assert calls == [("LazyTensorStorage", 4)], f"ReplayBuffer calls sampler.sample differently: {calls}; {FIX}"
