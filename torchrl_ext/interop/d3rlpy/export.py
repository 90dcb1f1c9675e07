"""``to_d3rlpy``: a dataset or a filtered view as a d3rlpy 2.x ``ReplayBuffer``, one episode at a time.

d3rlpy 2.x's ``MDPDataset`` is a ``ReplayBuffer`` over an ``InfiniteBuffer``
built from flat arrays; this builds the same buffer from one
``d3rlpy.dataset.Episode`` per dataset episode, so nothing larger than one
episode's arrays is ever assembled besides what d3rlpy keeps. An episode whose
last step is terminal ends ``terminated``; any other ends as a timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ...export.selection import episodes_of

__all__ = ["stored_trajectory", "to_d3rlpy"]

_CHANNELS = (1, 3, 4)


def _d3rlpy():
    try:
        import d3rlpy
    except ImportError as err:
        raise ImportError("to_d3rlpy needs d3rlpy: pip install torchrl-ext[d3rlpy]") from err
    return d3rlpy


def stored_trajectory(key: str = "observation", channels_first: bool = True
                      ) -> Callable[[Any, int], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """The default ``trajectory=``: stored ``key``, ``action``, ``("next", "reward")``, ``("next", "terminated")``.

    Args:
        key: the observation column.
        channels_first: move a last dim of 1, 3 or 4 of image observations ``[H, W, C]`` to the front.
    """

    def read(storage: Any, episode: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        first, length = storage.episode_bounds
        rows = int(first[episode]) + np.arange(int(length[episode]), dtype=np.int64)
        reader = storage.reader
        obs = reader.gather_column((key,), rows)
        if channels_first and obs.ndim == 4 and obs.shape[-1] in _CHANNELS:
            obs = np.ascontiguousarray(np.moveaxis(obs, -1, 1))
        return (obs, reader.gather_column(("action",), rows), reader.gather_column(("next", "reward"), rows),
                reader.gather_column(("next", "terminated"), rows))

    return read


def to_d3rlpy(source: Any, *, trajectory: Callable[[Any, int], tuple] | None = None, action_size: int | None = None,
              progress: bool = False) -> Any:
    """The episodes of ``source`` as a d3rlpy ``ReplayBuffer`` (what ``MDPDataset`` builds).

    Args:
        source: dataset directory, :class:`~torchrl_ext.ShardedStorage` or
            :class:`~torchrl_ext.storages.EpisodeView` (only its episodes).
        trajectory: ``(storage, episode) -> (obs, actions, rewards, terminals)``
            per dataset episode (default :func:`stored_trajectory`); e.g.
            :class:`torchrl_ext.interop.crowdplay.ProcessedTrajectories` for
            CrowdPlay's processed, downsampled frames.
        action_size: number of discrete actions (default: largest action + 1),
            or the action dimension when actions are float.
        progress: show a progress bar.

    Returns:
        A ``d3rlpy.dataset.ReplayBuffer`` with one episode per dataset episode.

    Raises:
        ImportError: d3rlpy is not installed.
        ValueError: ``source`` selects no episode.
    """
    d3rlpy = _d3rlpy()
    from d3rlpy.dataset import Episode, InfiniteBuffer, ReplayBuffer
    from tqdm.auto import tqdm

    storage, ids = episodes_of(source)
    if len(ids) == 0:
        raise ValueError("`source` selects no episode; loosen the filter")
    read = trajectory or stored_trajectory()
    episodes, largest, discrete = [], -1, True
    for e in tqdm(ids.tolist(), unit="episode", desc="to_d3rlpy", disable=not progress):
        obs, acs, rew, term = read(storage, e)
        acs = np.asarray(acs)
        discrete = discrete and np.issubdtype(acs.dtype, np.integer)
        acs = acs.reshape(len(acs), -1)
        if discrete:
            largest = max(largest, int(acs.max()))
        episodes.append(Episode(observations=np.asarray(obs), actions=acs,
                                rewards=np.asarray(rew, np.float32).reshape(-1, 1),
                                terminated=bool(np.asarray(term).reshape(-1)[-1])))
    space = d3rlpy.constants.ActionSpace.DISCRETE if discrete else d3rlpy.constants.ActionSpace.CONTINUOUS
    if action_size is None:
        action_size = largest + 1 if discrete else int(episodes[0].actions.shape[1])
    return ReplayBuffer(InfiniteBuffer(), episodes=episodes, action_space=space, action_size=action_size)
