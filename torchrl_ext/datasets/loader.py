"""``loader_context``: the ``multiprocessing_context`` for DataLoaders over this package's datasets.

Importing TorchRL sets multiprocessing's start method to ``spawn``, so each
DataLoader worker, every epoch, starts a fresh interpreter that imports torch,
TorchRL and this package again: seconds of CPU per worker before its first
batch. ``fork`` avoids that, but a process forked while another thread holds a
lock (a decoding pool mid-chunk, a logger, a progress monitor) may deadlock.

:func:`loader_context` decides when each worker starts, so a loader made early
still decides per epoch:

- ``fork`` while the process runs no thread but the main one: nothing can hold
  a lock the child needs. Native thread pools do not count: torch's are made
  safe by the DataLoader (one intra-op thread per worker), and this package's
  decoding pools and codec contexts belong to the process that made them (a
  child makes its own);
- otherwise from a fork server that imported :data:`PRELOAD` once, so workers
  fork from a process that already holds torch instead of importing it.

Workers started from the fork server receive the dataset pickled: storages
and datasets pickle by path and reopen their files in the worker.

Measured on the README's example (10,000 rows of 84x84 frames, batch 256, 2
workers, 2 shared cores), time to the first batch: ``spawn`` 9.5-25 s (about
12 s of worker CPU re-importing torch); ``fork`` 0.2-0.5 s (0.07 s of worker
CPU); fork server 0.16 s once running (its one start imports the preload:
about 5 s of CPU, once per process).
"""

from __future__ import annotations

import multiprocessing
import sys
import threading
from collections.abc import Sequence
from multiprocessing import forkserver
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any

from ..validation import one_of

__all__ = ["PRELOAD", "START_METHODS", "LoaderContext", "loader_context"]

PRELOAD = ("torchrl_ext.storages", "torchrl_ext.events")
"""Modules the fork server imports once: what unpickling a ``RowDataset`` or an ``EventWindowDataset`` needs."""

START_METHODS = ("auto", "fork", "forkserver")
"""``method`` of :func:`loader_context`."""


def _fork_is_safe() -> bool:
    """Only the main thread runs, on a platform where a forked child may go on running Python (Linux)."""
    return sys.platform.startswith("linux") and threading.active_count() == 1


class LoaderContext(BaseContext):
    """Starts each worker by ``fork`` or from the preloaded fork server, chosen when the worker starts.

    Queues, locks and events are the fork server's (named semaphores, which a
    forked child inherits too); only :meth:`Process` differs.

    Args:
        method: ``"auto"`` (fork while only the main thread runs, else the fork
            server), ``"fork"`` or ``"forkserver"``.
        preload: modules the fork server imports when it starts.
    """

    _name = "forkserver"

    def __init__(self, method: str, preload: Sequence[str]) -> None:
        self.method = method
        self.preload = list(preload)

    def start_method(self) -> str:
        """``"fork"`` or ``"forkserver"``: how a worker started now starts."""
        if self.method != "auto":
            return self.method
        return "fork" if _fork_is_safe() else "forkserver"

    def Process(self, *args: Any, **kwargs: Any) -> BaseProcess:  # multiprocessing's name for it
        """A worker process of the start method chosen now (see :meth:`start_method`)."""
        method = self.start_method()
        if method == "forkserver":
            forkserver.set_forkserver_preload(self.preload)  # read when the server starts, ignored once it runs
        return multiprocessing.get_context(method).Process(*args, **kwargs)

    def __repr__(self) -> str:
        return f"LoaderContext(method={self.method!r}, preload={self.preload!r})"


def loader_context(method: str = "auto", preload: Sequence[str] = PRELOAD) -> BaseContext:
    """The ``multiprocessing_context`` for a DataLoader with workers over this package's datasets.

    Args:
        method: ``"auto"`` forks while the process runs only its main thread
            and starts workers from a fork server otherwise; ``"fork"`` or
            ``"forkserver"`` always use that one.
        preload: modules the fork server imports once when it starts (it sets
            multiprocessing's fork server preload then); add the module of a
            dataset class of your own.

    Returns:
        A context for ``DataLoader(..., num_workers=N, multiprocessing_context=...)``
        (``N > 0``); on a platform without ``fork`` and a fork server
        (Windows), ``method="auto"`` gives the ``spawn`` context.

    Raises:
        ValueError: ``method`` is unknown or not available on this platform.
        TypeError: ``preload`` is not a list of module names.

    Examples:
        >>> ctx = loader_context()
        >>> ctx.start_method() in ("fork", "forkserver")
        True
        >>> loader_context("forkserver", preload=["torchrl_ext.storages"]).start_method()
        'forkserver'
    """
    one_of(method, "method", START_METHODS)
    if isinstance(preload, str) or not isinstance(preload, Sequence) or not all(
            isinstance(m, str) and m for m in preload):
        raise TypeError(f"`preload` must be a list of module names, e.g. {list(PRELOAD)}, got {preload!r}")
    available = multiprocessing.get_all_start_methods()
    if method == "auto" and not {"fork", "forkserver"} <= set(available):
        return multiprocessing.get_context("spawn")
    if method != "auto" and method not in available:
        raise ValueError(f"`method` {method!r} is not available on {sys.platform}, which has {available}; "
                         "pass method='auto'")
    return LoaderContext(method, preload)
