"""Exports of a dataset (or a filtered :class:`~torchrl_ext.storages.EpisodeView`) as a new dataset.

Exports to other libraries' formats live with their project in :mod:`torchrl_ext.interop`
(:func:`torchrl_ext.interop.d3rlpy.to_d3rlpy`).


- :mod:`.dataset`: :func:`export_episodes`, the selected episodes (optionally transformed) as a new dataset.
- :mod:`.selection`: :func:`episodes_of`, the storage and episode ids a source selects.
"""

from ..moved_paths import moved_names
from .dataset import export_episodes
from .selection import episodes_of

__all__ = ["episodes_of", "export_episodes"]

# other libraries' formats live in torchrl_ext.interop (old names still resolve, with a warning)
__getattr__ = moved_names(__name__, dict.fromkeys(("stored_trajectory", "to_d3rlpy"), "torchrl_ext.interop.d3rlpy"))
