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
from torchrl.data.replay_buffers.samplers import (
    Sampler,
    SliceSampler,
    SliceSamplerWithoutReplacement,
)

from torchrl_ext.compat.torchrl_samplers import SamplerBase, slice_sampler_keys

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


# Episodes of 3, 5, 2, 6, 4 rows: the one of 2 ends inside a slice of 3 when strict_length=False.
EPISODE = torch.repeat_interleave(torch.arange(5), torch.tensor([3, 5, 2, 6, 4]))
ENDS = torch.cat([EPISODE[1:] != EPISODE[:-1], torch.tensor([True])])


def slice_rows(traj_name=("episode",)):
    """20 rows with every flag a SliceSampler might read, each with distinct values, plus a payload."""
    n = EPISODE.numel()
    starts = torch.cat([torch.tensor([True]), EPISODE[1:] != EPISODE[:-1]])
    rows = TensorDict({"observation": torch.arange(n * 3.0).view(n, 3), "is_init": starts[:, None],
                       "next": {"done": ENDS[:, None], "terminated": (ENDS & (EPISODE % 2 == 0))[:, None],
                                "truncated": (ENDS & (EPISODE % 2 == 1))[:, None], "reward": torch.rand(n, 1)}},
                      batch_size=[n])
    rows.set(traj_name, EPISODE.clone())
    return rows


def filled(rows):
    storage = LazyTensorStorage(rows.shape[0])
    storage.set(torch.arange(rows.shape[0]), rows)
    return storage


SLICE_CONFIGS = {
    "trajectories": {"trajectories": EPISODE, "cache_values": True},
    "traj_key": {"traj_key": "episode"},
    "end_key": {"end_key": ("next", "done")},
    "end_keys": {"end_keys": [("next", "terminated"), ("next", "truncated")]},
    "found_traj_key": {},
    "no_truncated_key": {"trajectories": EPISODE, "cache_values": True, "truncated_key": None},
    "no_init_key": {"trajectories": EPISODE, "cache_values": True, "init_key": None},
    "other_flags": {"traj_key": "episode", "truncated_key": ("next", "cut"), "init_key": "first"},
}


@pytest.mark.parametrize("cls", [SliceSampler, SliceSamplerWithoutReplacement])
@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("config", sorted(SLICE_CONFIGS))
def test_slice_sampler_reads_nothing_but_slice_sampler_keys(config, strict, cls):
    rows = slice_rows()
    rows.set("first", ~rows["is_init"])  # init_key="first": stored markers inside slices
    kwargs = SLICE_CONFIGS[config]
    if cls is SliceSamplerWithoutReplacement:
        kwargs = {k: v for k, v in kwargs.items() if k != "cache_values"}
    full, narrow = cls(slice_len=3, strict_length=strict, **kwargs), cls(slice_len=3, strict_length=strict, **kwargs)
    keys = slice_sampler_keys(narrow)
    kept = rows.select(*keys, strict=False)
    assert set(kept.keys(True, True)) < set(rows.keys(True, True)), f"{keys} keeps every column"
    full_storage, narrow_storage = filled(rows), filled(kept)
    torch.manual_seed(3)
    got = [full.sample(full_storage, 6) for _ in range(2)]  # 4 of 5 episodes: none left over
    torch.manual_seed(3)
    narrowed = [narrow.sample(narrow_storage, 6) for _ in range(2)]
    for (index, info), (n_index, n_info) in zip(got, narrowed):
        assert torch.equal(index[0], n_index[0]), (
            f"SliceSampler({config}) samples other rows from a storage holding only {keys}: {FIX}")
        assert info.keys() == n_info.keys() and all(torch.equal(info[k], n_info[k]) for k in info), (
            f"SliceSampler({config}) reads storage keys beyond {keys} for its info: {FIX}")


def test_slice_sampler_info_flags_are_the_stored_flags():
    rows = slice_rows()
    rows.set("is_init", (torch.arange(20) % 2 == 1)[:, None])  # stored markers inside slices too
    sampler = SliceSampler(slice_len=4, trajectories=EPISODE, cache_values=True, strict_length=False)
    torch.manual_seed(0)
    index, info = sampler.sample(filled(rows), 20)
    picked = rows[index[0]]
    assert torch.equal(info["next", "terminated"], picked["next", "terminated"]), (
        f"SliceSampler's info no longer takes `terminated` from the sampled rows: {FIX}")
    assert torch.equal(info["next", "done"], picked["next", "done"] | info["next", "truncated"]), (
        f"SliceSampler's info no longer takes `done` from the sampled rows: {FIX}")
    slice_starts = info["next", "truncated"].roll(1, 0)
    slice_starts[0] = True
    assert torch.equal(info["is_init"], picked["is_init"] | slice_starts), (
        f"SliceSampler's info no longer takes `is_init` from the sampled rows: {FIX}")


def test_slice_sampler_finds_the_collector_trajectory_key():
    rows = slice_rows(("collector", "traj_ids"))
    keys = slice_sampler_keys(SliceSampler(slice_len=4))
    full, narrow = SliceSampler(slice_len=4), SliceSampler(slice_len=4)
    torch.manual_seed(1)
    index = full.sample(filled(rows), 8)[0]
    torch.manual_seed(1)
    n_index = narrow.sample(filled(rows.select(*keys, strict=False)), 8)[0]
    assert ("collector", "traj_ids") in keys and torch.equal(index[0], n_index[0]), (
        f"SliceSampler looks for other trajectory keys than {keys}: {FIX}")


def test_slice_sampler_keys_of_given_boundaries_are_the_flags_alone():
    assert slice_sampler_keys(SliceSampler(slice_len=4, trajectories=EPISODE, cache_values=True)) == (
        ("next", "done"), ("next", "terminated"), ("is_init",))
    assert slice_sampler_keys(SliceSampler(slice_len=4, ends=ENDS, cache_values=True, init_key=None)) == (
        ("next", "done"), ("next", "terminated"))


def test_slice_sampler_keys_of_a_fragmented_sampler_are_unknown():
    assert slice_sampler_keys(SliceSampler(slice_len=4, traj_key="episode", fragmented=True)) is None
