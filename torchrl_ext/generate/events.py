"""Events recorded while an episode is generated.

Built in: the sign of every non-zero reward (``reward:+1`` / ``reward:-1``,
value = the reward), the episode's last step (``episode_end``, value = the
return) and Atari life loss (``info["lives"]`` decreasing: ``life_lost``,
value = lives left). A user ``events_fn(info, prev_info)`` may add
``(name, value)`` pairs for any step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["EventsFn", "step_events"]

EventsFn = Callable[[Mapping[str, Any], Mapping[str, Any]], list[tuple[str, float]]]


def step_events(
    reward: float,
    info: Mapping[str, Any],
    prev_info: Mapping[str, Any],
    events_fn: EventsFn | None = None,
) -> list[tuple[str, float]]:
    """The events of one step.

    Args:
        reward: reward of the step.
        info: ``info`` returned by this ``env.step``.
        prev_info: ``info`` of the previous step (of ``env.reset`` at step 0).
        events_fn: optional ``(info, prev_info) -> [(name, value), ...]``.

    Example:
        >>> step_events(-1.0, {"lives": 2}, {"lives": 3})
        [('reward:-1', -1.0), ('life_lost', 2.0)]
    """
    out: list[tuple[str, float]] = []
    if reward > 0:
        out.append(("reward:+1", float(reward)))
    elif reward < 0:
        out.append(("reward:-1", float(reward)))
    lives, prev = info.get("lives"), prev_info.get("lives")
    if lives is not None and prev is not None and int(lives) < int(prev):
        out.append(("life_lost", float(lives)))
    if events_fn is not None:
        for item in events_fn(info, prev_info) or ():
            try:
                name, value = item
            except (TypeError, ValueError):
                raise ValueError(f"`events_fn` must return (name, value) pairs, got {item!r}") from None
            if not isinstance(name, str) or not name:
                raise ValueError(f"`events_fn` returned event name {name!r}; expected a non-empty str")
            out.append((name, float(value)))
    return out
