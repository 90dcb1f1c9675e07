"""Old import paths of moved modules and names still work: the same objects, with a DeprecationWarning."""

from __future__ import annotations

import importlib
import sys

import pytest

from torchrl_ext.moved_paths import MOVED_MODULES


def _forget(prefix: str) -> None:
    for name in [n for n in sys.modules if n == prefix or n.startswith(prefix + ".")]:
        del sys.modules[name]


@pytest.mark.parametrize(("old", "new"), sorted(MOVED_MODULES.items()))
def test_old_module_path_is_the_new_module(old, new):
    module = importlib.import_module(new)
    _forget(old)
    with pytest.warns(DeprecationWarning, match=rf"`{old}` moved to `{new}`; import it from there"):
        alias = importlib.import_module(old)
    assert alias is module
    assert module.__spec__.name == new  # the alias did not rename the real module
    parent, _, child = old.rpartition(".")
    assert getattr(sys.modules[parent], child) is module


def test_submodule_of_a_moved_package_is_one_module():
    from torchrl_ext.interop.minestudio import importer

    _forget("torchrl_ext.sources.minestudio")
    with pytest.warns(DeprecationWarning, match=r"moved to `torchrl_ext\.interop\.minestudio"):
        from torchrl_ext.sources.minestudio.importer import import_minestudio
    assert import_minestudio is importer.import_minestudio


@pytest.mark.parametrize(("package", "name", "home"), [
    ("torchrl_ext.events", "MineStudioItems", "torchrl_ext.interop.minestudio"),
    ("torchrl_ext.events", "agent_action", "torchrl_ext.interop.minestudio"),
    ("torchrl_ext.sources", "download_atari_run", "torchrl_ext.interop.atari_dqn"),
    ("torchrl_ext.sources", "convert_atari_runs", "torchrl_ext.interop.atari_dqn"),
    ("torchrl_ext.datasets", "AtariDQNExperienceReplay", "torchrl_ext.interop.atari_dqn"),
    ("torchrl_ext.writer", "add_episode_metadata", "torchrl_ext.preprocessing"),
    ("torchrl_ext.export", "to_d3rlpy", "torchrl_ext.interop.d3rlpy"),
])
def test_old_name_resolves_with_a_warning(package, name, home):
    module = importlib.import_module(package)
    with pytest.warns(DeprecationWarning, match=rf"`{package}.{name}` moved to `{home}.{name}`"):
        value = getattr(module, name)
    assert value is getattr(importlib.import_module(home), name)


def test_unknown_name_is_still_an_attribute_error():
    import torchrl_ext.events

    with pytest.raises(AttributeError, match="module 'torchrl_ext.events' has no attribute 'nothing_here'"):
        torchrl_ext.events.nothing_here  # noqa: B018


def test_public_names_at_the_top_are_where_they_were():
    import torchrl_ext
    from torchrl_ext.format import EpisodeTable
    from torchrl_ext.interop.atari_dqn import AtariDQNExperienceReplay
    from torchrl_ext.interop.d3rlpy import to_d3rlpy
    from torchrl_ext.preprocessing import add_episode_metadata

    assert torchrl_ext.EpisodeTable is EpisodeTable
    assert torchrl_ext.AtariDQNExperienceReplay is AtariDQNExperienceReplay
    assert torchrl_ext.to_d3rlpy is to_d3rlpy
    assert torchrl_ext.add_episode_metadata is add_episode_metadata
