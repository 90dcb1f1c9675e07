"""Local worker processes that play whole episodes (the default executor).

Each worker owns one env and one agent and plays one episode at a time,
sent over its own pipe as ``(episode, seed)``; the finished episode comes back
as numpy arrays (or, with an encoder, with its encoded columns as chunk
bytes). The parent watches every worker's pipe and process sentinel:
a worker that dies (``os._exit``, a signal, an exception in the env) is
restarted, up to ``max_restarts`` times per worker, and its unfinished episode
is queued again at the front. Nothing a worker sends is written until the
whole episode has arrived, so a crash never leaves part of an episode behind.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import sys
import traceback
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import wait as wait_any
from typing import Any

from ..parent_watch import exit_with_parent
from .encode import EncodeError, FrameEncoder
from .events import EventsFn
from .rollout import Episode, ResetError, make_agent, rollout

__all__ = ["ProcessExecutor", "WorkerFailed", "worker_main"]

logger = logging.getLogger(__name__)


class WorkerFailed(RuntimeError):
    """A worker crashed more often than ``max_restarts`` allows, or could not build its env."""


def worker_main(conn, env_fn: Callable[[], Any], policy_fn, max_steps: int, events_fn: EventsFn | None,
                worker_id: int, encoder: FrameEncoder | None = None) -> None:
    """Body of one worker process: build env and agent, play (and encode) episodes until told to stop."""
    exit_with_parent()
    episode = None
    try:
        env = env_fn()
        agent = make_agent(policy_fn, env)
    except BaseException:  # deterministic: restarting would fail the same way
        conn.send(("setup", None, traceback.format_exc()))
        conn.close()
        sys.exit(1)
    try:
        while True:
            msg = conn.recv()
            if msg is None:
                break
            episode, seed = msg
            try:
                result = rollout(env, agent, seed, max_steps, events_fn)
            except ResetError as err:  # deterministic: the same seed fails the same way
                conn.send(("reset", episode, str(err)))
                conn.close()
                sys.exit(1)
            result["metadata"]["worker"] = worker_id
            if encoder:
                try:
                    encoder(result)
                except EncodeError as err:  # deterministic: restarting would fail the same way
                    conn.send(("fatal", episode, str(err)))
                    conn.close()
                    sys.exit(1)
            conn.send(("ok", episode, result))
            episode = None
        env.close()
    except (EOFError, KeyboardInterrupt):
        pass
    except BaseException:  # reported to the parent, which restarts this worker
        conn.send(("error", episode, traceback.format_exc()))
        conn.close()
        sys.exit(1)


class _Worker:
    def __init__(self, wid: int, process, conn) -> None:
        self.wid, self.process, self.conn = wid, process, conn
        self.job: tuple[int, int] | None = None
        self.restarts = 0


class ProcessExecutor:
    """Plays episodes in ``num_workers`` local processes (forkserver, or spawn where unavailable)."""

    def __init__(self, env_fn, policy_fn, *, max_steps: int, events_fn: EventsFn | None = None,
                 num_workers: int = 1, max_restarts: int = 3, encoder: FrameEncoder | None = None) -> None:
        methods = mp.get_all_start_methods()
        self._ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
        if "forkserver" in methods:
            self._ctx.set_forkserver_preload([__name__])
        self._args = (env_fn, policy_fn, max_steps, events_fn)
        self._encoder = encoder
        self.max_restarts = max_restarts
        self.restarts = 0
        self._queue: deque[tuple[int, int]] = deque()
        self._last_error: dict[int, str] = {}
        self._workers = [self._start(wid) for wid in range(num_workers)]

    def _start(self, wid: int) -> _Worker:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=worker_main, args=(child, *self._args, wid, self._encoder), daemon=True,
                                 name=f"torchrl_ext-generate-{wid}")
        proc.start()
        child.close()
        return _Worker(wid, proc, parent)

    @property
    def in_flight(self) -> int:
        return len(self._queue) + sum(w.job is not None for w in self._workers)

    def submit(self, episode: int, seed: int) -> None:
        self._queue.append((episode, seed))
        self._dispatch()

    def _dispatch(self) -> None:
        for w in self._workers:
            if w.job is None and self._queue:
                w.job = self._queue.popleft()
                try:
                    w.conn.send(w.job)
                except (BrokenPipeError, OSError):
                    pass  # the sentinel reports the dead worker on the next wait

    def wait(self, timeout: float | None = 1.0) -> list[tuple[int, Episode]]:
        """Blocks until a worker finishes or dies; returns finished ``(episode, result)`` pairs."""
        handles = [w.conn for w in self._workers] + [w.process.sentinel for w in self._workers]
        wait_any(handles, timeout)
        done = []
        for i, w in enumerate(self._workers):
            dead = False
            try:
                while w.conn.poll():
                    status, episode, payload = w.conn.recv()
                    if status == "ok":
                        done.append((episode, payload))
                        w.job = None
                    elif status == "fatal":
                        raise WorkerFailed(
                            f"generation worker {w.wid} could not encode episode {episode}: {payload}; "
                            "nothing is retried (every episode would fail the same way)"
                        )
                    elif status == "reset":
                        raise WorkerFailed(
                            f"generation worker {w.wid} could not start episode {episode}: {payload}; fix "
                            "`env_fn`/`policy_fn` (nothing is retried: the same seed fails the same way)"
                        )
                    elif status == "setup":
                        raise WorkerFailed(
                            f"generation worker {w.wid} could not build its env or agent: "
                            f"{payload.strip().splitlines()[-1]}; fix `env_fn`/`policy_fn` (every "
                            "worker would fail the same way, so nothing is retried)"
                        )
                    else:
                        self._last_error[w.wid] = payload
            except (EOFError, OSError):
                dead = True
            if dead or not w.process.is_alive():
                self._workers[i] = self._restart(w)
        self._dispatch()
        return done

    def _restart(self, w: _Worker) -> _Worker:
        w.process.join(timeout=5)
        w.conn.close()
        reason = self._last_error.pop(w.wid, None) or f"exit code {w.process.exitcode}"
        if w.restarts >= self.max_restarts:
            raise WorkerFailed(
                f"generation worker {w.wid} failed {w.restarts + 1} times (max_restarts={self.max_restarts}); "
                f"last failure: {reason.strip().splitlines()[-1]}"
            )
        logger.warning("worker %d died (%s) during episode %s; restarting",
                       w.wid, reason.strip().splitlines()[-1], None if w.job is None else w.job[0])
        if w.job is not None:
            self._queue.appendleft(w.job)
        new = self._start(w.wid)
        new.restarts = w.restarts + 1
        self.restarts += 1
        return new

    def close(self) -> None:
        for w in self._workers:
            try:
                w.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for w in self._workers:
            w.process.join(timeout=5)
            if w.process.is_alive():
                w.process.terminate()
                w.process.join(timeout=5)
            w.conn.close()
