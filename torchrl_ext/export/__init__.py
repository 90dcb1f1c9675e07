"""Exports of a dataset (or a filtered :class:`~torchrl_ext.storages.EpisodeView`) to other libraries' formats.

- :mod:`.d3rlpy`: :func:`to_d3rlpy`, a d3rlpy 2.x ``ReplayBuffer`` (``pip install torchrl-ext[d3rlpy]``).
"""

from .d3rlpy import to_d3rlpy

__all__ = ["to_d3rlpy"]
