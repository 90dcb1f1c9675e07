"""d3rlpy interop: a dataset or view as a d3rlpy 2.x ``ReplayBuffer`` (``pip install torchrl-ext[d3rlpy]``)."""

from .export import stored_trajectory, to_d3rlpy

__all__ = ["stored_trajectory", "to_d3rlpy"]
