"""Progress bars of long operations, all in one style.

Every long operation (a conversion, an import, a download, a preprocessing
run, a generation, an event index build) shows one tqdm bar made here:

* a description naming the operation (``"convert Pong/1"``,
  ``"import crowdplay"``, ``"preprocess"``), never the function it delegates to;
* a unit counted as the work is done (``"frame"``, ``"B"``, ``"episode"``,
  ``"row"``), scaled (``k``, ``M``) for units that run into millions;
* a total equal to what the loop counts, so an operation that completes ends
  with ``n == total``; a resumed operation starts at ``initial``, the work an
  earlier call already did;
* off when the caller passes ``enabled=False`` (the operations'
  ``progress=False``) and when stderr is not a terminal (tqdm's ``disable=None``).

The count is kept here as well as in tqdm, so it is right even when the bar
is not shown. An operation that completes with a count other than its total
is logged (DEBUG) and its bar drawn full: the total counted something the
loop did not.

Example:
    >>> with ProgressBar("copy", 3, unit="file", enabled=False) as bar:
    ...     for _ in range(3):
    ...         bar.update(1)
    >>> (bar.n, bar.total)
    (3, 3)
    >>> list(track(["a", "b"], "read", unit="log", enabled=False))
    ['a', 'b']
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

from tqdm.auto import tqdm

__all__ = ["ProgressBar", "track"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
_SCALED = frozenset({"B", "frame", "row", "step"})


class ProgressBar:
    """One operation's bar; a context manager that closes it.

    Args:
        desc: the operation, as the user would name it (``"import crowdplay"``).
        total: units the operation counts in all (``None`` until known; see :meth:`moveto`).
        unit: what one step of the count is (``"frame"``, ``"B"``, ``"episode"``...).
        initial: units already done by an earlier, interrupted call.
        enabled: ``False`` hides the bar (it still counts).
        leave: keep the finished bar on screen.

    Attributes:
        n: units counted so far (``initial`` included).
        initial: units the bar started at.
        total: the total the bar runs to.
    """

    def __init__(self, desc: str, total: int | None, *, unit: str, initial: int = 0, enabled: bool = True,
                 leave: bool = True) -> None:
        self.desc, self.unit, self.enabled = desc, unit, bool(enabled)
        self.n = self.initial = int(initial)
        self.total = total
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, unit_scale=unit in _SCALED,
                        unit_divisor=1024 if unit == "B" else 1000, leave=leave, dynamic_ncols=True,
                        disable=None if enabled else True)

    def update(self, n: int = 1, **postfix: Any) -> None:
        """Counts ``n`` more units; ``postfix`` values are shown beside the count they go with."""
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)
        self.n += n
        self.bar.update(n)

    def moveto(self, n: int, total: int | None = None) -> None:
        """Sets the count (and the total, when given) to absolute values, for ``(done, total)`` callbacks.

        On a bar made before its total was known, the call that first gives the
        total also gives the start: ``n`` is the work done before (``initial``).
        """
        if total is not None and self.total is None and self.n == self.initial:
            self.n = self.initial = self.bar.n = self.bar.initial = n
            self.total = self.bar.total = total
            self.bar.refresh()
            return
        if total is not None and total != self.total:
            self.total = self.bar.total = total
        self.update(n - self.n)

    def close(self, completed: bool = True) -> None:
        """Closes the bar; ``completed``: the operation ran to its end (then ``n`` should equal ``total``)."""
        if completed and self.n != self.total:
            logger.debug("%s: counted %d %s, the total was %s", self.desc, self.n, self.unit, self.total)
            self.bar.total = self.n
            self.bar.refresh()
        self.bar.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(completed=exc_type is None)


def track(items: Sequence[T], desc: str, *, unit: str, enabled: bool = True) -> Iterator[T]:
    """Yields ``items`` under a :class:`ProgressBar` of ``len(items)`` units, one per item done.

    An item counts once the loop body that received it has finished, so a
    loop that runs to its end ends at ``n == total``.
    """
    with ProgressBar(desc, len(items), unit=unit, enabled=enabled) as bar:
        for item in items:
            yield item
            bar.update(1)
