"""Item formats of other projects for :class:`~torchrl_ext.events.EventWindowDataset`, found as plugins.

A plugin lets ``EventWindowDataset`` take another project's constructor
arguments and return that project's items (e.g. MineStudio's ``EventDataset``
with ``dataset_dirs=``, ``modal_kernel_callbacks=``...), while this room
knows nothing of the project. A plugin is an object with:

``name``
    the ``compat=`` value that selects it (``"minestudio"``).
``options``
    the constructor arguments it owns besides the window options.
``start(options, roots) -> (roots, session)``
    pops its arguments from ``options`` (and may set window option defaults
    there), returns the roots to open and a session object with
    ``texts(names) -> list[str]`` (each event name's item text) and
    ``items(storages, windows, texts) -> object | None`` (an object whose
    ``items(ids)`` returns the item dicts, or None to use the generic items).

Plugins are found through the ``torchrl_ext.window_items`` entry point group
(the package declares its own in ``pyproject.toml``) or
:func:`register_window_items`, and loaded only when a call names one
(``compat=``) or passes an argument no window option has.
"""

from __future__ import annotations

from dataclasses import fields
from importlib.metadata import entry_points
from typing import Any

from .query import WindowQuery

__all__ = ["ENTRY_POINT_GROUP", "register_window_items", "window_items_for"]

ENTRY_POINT_GROUP = "torchrl_ext.window_items"
_REGISTERED: dict[str, Any] = {}
_WINDOW_OPTIONS = frozenset(f.name for f in fields(WindowQuery)) | {"compat"}


def register_window_items(plugin: Any) -> None:
    """Registers an item plugin (see the module docstring) under ``plugin.name``."""
    for attr in ("name", "options", "start"):
        if not hasattr(plugin, attr):
            raise TypeError(f"an item plugin needs `name`, `options` and `start`; {plugin!r} has no `{attr}`")
    _REGISTERED[plugin.name] = plugin


def _plugins() -> list[Any]:
    found = dict(_REGISTERED)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in found:
            found[ep.name] = ep.load()
    return list(found.values())


def window_items_for(options: dict[str, Any]) -> Any | None:
    """The plugin that ``options`` select: by ``compat=`` or by an argument it owns; None for plain windows."""
    compat = options.get("compat")
    foreign = set(options) - _WINDOW_OPTIONS
    if compat is None and not foreign:
        return None
    for plugin in _plugins():
        if plugin.name == compat or foreign & set(plugin.options):
            return plugin
    return None  # unknown arguments are then reported by the window option check
