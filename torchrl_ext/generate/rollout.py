"""One episode: reset with its seed, act until done or ``max_steps``, return numpy arrays.

An agent is either an object with ``act(observation, memory) -> (action,
memory)`` (the recurrent state is carried across steps, starting at ``None``,
like MineStudio's ``get_action(obs, memory)``) or a plain callable
``observation -> action``. An agent with a ``reset(seed)`` method is reset with
the episode's seed before every episode, which makes stochastic agents
reproducible per episode.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .events import EventsFn, step_events

__all__ = ["RandomPolicy", "Episode", "ResetError", "make_agent", "rollout", "env_name", "stack_steps"]

Episode = dict[str, Any]


class RandomPolicy:
    """Uniform actions from the env's action space, seeded per episode."""

    def __init__(self, action_space) -> None:
        self.action_space = action_space

    def reset(self, seed: int) -> None:
        self.action_space.seed(seed)

    def act(self, observation: Any, memory: Any = None) -> tuple[Any, Any]:
        return self.action_space.sample(), memory


def make_agent(policy_fn: Callable[[], Any] | None, env) -> Any:
    """Builds the agent: ``RandomPolicy`` when ``policy_fn`` is None."""
    if policy_fn is None:
        return RandomPolicy(env.action_space)
    agent = policy_fn()
    if not (hasattr(agent, "act") or callable(agent)):
        raise TypeError(
            f"`policy_fn()` must return an object with act(obs, memory) or a callable obs -> action, "
            f"got {type(agent).__name__}"
        )
    return agent


def env_name(env) -> str:
    spec = getattr(env, "spec", None)
    return spec.id if spec is not None and spec.id else type(env.unwrapped).__name__


def stack_steps(values: list[Any], name: str = "observation") -> Any:
    """Per-step values of one space -> arrays with a leading time dimension, nested like the space.

    A ``Dict`` space's values (mappings) become a dict of stacked leaves, a
    ``Tuple`` space's values (tuples) a dict keyed ``"0"``, ``"1"``, ...; every
    leaf is stacked with numpy, so each becomes a column of its own.

    Example:
        >>> out = stack_steps([{"pos": np.array([0.0, 1.0]), "id": 3}, {"pos": np.array([2.0, 3.0]), "id": 4}])
        >>> out["pos"].tolist(), out["id"].tolist()
        ([[0.0, 1.0], [2.0, 3.0]], [3, 4])
        >>> {k: v.tolist() for k, v in stack_steps([(1, 2.5), (3, 4.5)]).items()}
        {'0': [1, 3], '1': [2.5, 4.5]}
    """
    first = values[0]
    if isinstance(first, Mapping):
        return {str(k): stack_steps([v[k] for v in values], f"{name}/{k}") for k in first}
    if isinstance(first, tuple):
        return {str(i): stack_steps([v[i] for v in values], f"{name}/{i}") for i in range(len(first))}
    leaves = [np.asarray(v) for v in values]
    if leaves[0].dtype == object or leaves[0].dtype.kind in "USV":
        raise TypeError(
            f"`{name}` holds {leaves[0].dtype.name} values (e.g. {values[0]!r:.40}); a dataset stores "
            "numbers and bools only: map it to numbers in the env (a wrapper) before generating"
        )
    return np.stack(leaves)


class ResetError(RuntimeError):
    """The env's or agent's ``reset(seed)`` raised: the same seed fails the same way, so it is never retried."""


def rollout(env, agent, seed: int, max_steps: int, events_fn: EventsFn | None = None) -> Episode:
    """Plays one episode and returns it as nested numpy dicts in TED layout.

    Returns:
        ``{"data": {...}, "events": [(step, name, value)], "metadata": {...}}``
        where ``data`` has ``observation``, ``action`` and ``next`` with
        ``observation``, ``reward`` (float32 ``[T, 1]``), ``done``,
        ``terminated``, ``truncated`` (bool ``[T, 1]``). Reaching
        ``max_steps`` before the env ends the episode marks the last step
        truncated. Observations and actions of ``Dict``/``Tuple`` spaces are
        nested dicts (see :func:`stack_steps`), one column per leaf.
    """
    try:
        if hasattr(agent, "reset"):
            agent.reset(seed)
        obs, info = env.reset(seed=seed)
    except Exception as err:
        raise ResetError(f"reset with seed {seed} raised {type(err).__name__}: {err}") from err
    act = agent.act if hasattr(agent, "act") else None
    memory = None
    observations, actions, rewards, terms, truncs, events = [obs], [], [], [], [], []
    prev_info = info
    for t in range(max_steps):
        if act is not None:
            action, memory = act(obs, memory)
        else:
            action = agent(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        actions.append(action)
        observations.append(obs)
        rewards.append(float(reward))
        terms.append(bool(terminated))
        truncs.append(bool(truncated) or (t == max_steps - 1 and not terminated))
        events.extend((t, name, value) for name, value in step_events(float(reward), info, prev_info, events_fn))
        prev_info = info
        if terminated or truncated:
            break
    length = len(actions)
    ret = float(np.sum(rewards, dtype=np.float64))
    events.append((length - 1, "episode_end", ret))
    obs_all = stack_steps(observations, "observation")
    term = np.asarray(terms, dtype=bool)[:, None]
    trunc = np.asarray(truncs, dtype=bool)[:, None]
    data = {
        "observation": _slice(obs_all, slice(None, -1)),
        "action": stack_steps(actions, "action"),
        "next": {
            "observation": _slice(obs_all, slice(1, None)),
            "reward": np.asarray(rewards, dtype=np.float32)[:, None],
            "done": term | trunc,
            "terminated": term,
            "truncated": trunc,
        },
    }
    metadata = {"env_id": env_name(env), "seed": int(seed), "episode_return": ret}
    return {"data": data, "events": events, "metadata": metadata}


def _slice(value: Any, index: slice) -> Any:
    return {k: _slice(v, index) for k, v in value.items()} if isinstance(value, dict) else value[index]
