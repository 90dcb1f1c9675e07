"""``import torchrl_ext`` loads no heavy dependency; every public name resolves on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

import torchrl_ext

HEAVY = ("torch", "torchrl", "tensordict", "ray", "google")


def _fresh(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_bare_import_loads_no_heavy_module():
    out = _fresh(f"import sys, torchrl_ext\nprint(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY}))")
    assert out == "[]"


def test_every_earlier_public_name_stays_and_is_listed_by_dir():
    assert set(torchrl_ext.__all__) >= {
        "FORMAT_VERSION", "FormatError", "Manifest", "read_manifest", "ShardWriter", "EpisodeTable",
        "ShardedStorage", "EventIndex", "WindowQuery", "EventSliceSampler", "EventWindowDataset",
        "preprocess", "preprocess_buffer", "AtariDQNExperienceReplay",
    }
    assert len(set(torchrl_ext.__all__)) == len(torchrl_ext.__all__)
    assert set(torchrl_ext.__all__) <= set(dir(torchrl_ext))


@pytest.mark.parametrize("name", torchrl_ext.__all__)
def test_every_public_name_resolves_and_is_cached(name):
    value = getattr(torchrl_ext, name)
    assert torchrl_ext.__dict__[name] is value  # the next access skips __getattr__
    if callable(value):
        assert value.__module__.startswith("torchrl_ext.")


@pytest.mark.slow  # a subprocess importing torch
def test_from_import_works_in_a_fresh_process():
    out = _fresh("from torchrl_ext import ShardedStorage, FormatError\n"
                 "import sys\nprint(ShardedStorage.__name__, FormatError.__name__, 'torch' in sys.modules)")
    assert out == "ShardedStorage FormatError True"


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match=r"module 'torchrl_ext' has no attribute 'Nope'"):
        torchrl_ext.Nope  # noqa: B018
    with pytest.raises(ImportError, match=r"cannot import name 'Nope' from 'torchrl_ext'"):
        from torchrl_ext import Nope  # noqa: F401


@pytest.mark.slow  # a subprocess importing torch and TorchRL
def test_torchrl_load_dataset_finds_the_prefix_registered_before_torchrl_was_imported(tmp_path):
    from torchrl_ext.synthetic import write_synthetic

    root = write_synthetic(tmp_path / "ds", episodes=3, length=4, obs_shape=(2,))
    out = _fresh(
        "import sys, torch, torchrl_ext\n"
        "assert 'torchrl' not in sys.modules\n"
        "from torchrl.data.datasets import load_dataset\n"
        f"rb = load_dataset('torchrl_ext:{root}', batch_size=5)\n"
        "torch.manual_seed(0)\n"
        "print(type(rb).__name__, len(rb), rb.sample().batch_size[0])"
    )
    assert out == "ShardedExperienceReplay 12 5"
