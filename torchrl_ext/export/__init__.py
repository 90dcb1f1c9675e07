"""Exports of a dataset (or a filtered :class:`~torchrl_ext.storages.EpisodeView`): other libraries' formats, new datasets.

- :mod:`.d3rlpy`: :func:`to_d3rlpy`, a d3rlpy 2.x ``ReplayBuffer`` (``pip install torchrl-ext[d3rlpy]``).
- :mod:`.dataset`: :func:`export_episodes`, the selected episodes (optionally transformed) as a new dataset.
- :mod:`.selection`: :func:`episodes_of`, the storage and episode ids a source selects.
"""

from .d3rlpy import stored_trajectory, to_d3rlpy
from .dataset import export_episodes
from .selection import episodes_of

__all__ = ["episodes_of", "export_episodes", "stored_trajectory", "to_d3rlpy"]
