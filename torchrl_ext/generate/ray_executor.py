"""Ray actors that play whole episodes (``executor="ray"``; ``pip install torchrl-ext[ray]``).

Each actor owns one env and one agent and is created with Ray's
``max_restarts``: an actor whose process dies is restarted by Ray, and the
episode it was playing is submitted again. Without a running cluster a private
local one is started that listens on the loopback interface only, without the
dashboard or usage statistics, in a short temporary directory, and is shut
down by :meth:`RayExecutor.close`; its actors see this process's ``sys.path``
(as ``PYTHONPATH``), so ``env_fn`` may live in any module this process imports.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
from collections import deque
from typing import Any

from ..compat.ray_cluster import loopback_only, restore
from .encode import EncodeError, FrameEncoder
from .events import EventsFn
from .rollout import Episode, ResetError, make_agent, rollout
from .workers import WorkerFailed

__all__ = ["RayExecutor", "EpisodeActor", "import_ray"]

logger = logging.getLogger(__name__)


def import_ray():
    """Imports Ray with usage statistics off; a missing Ray says how to install it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError as err:
        raise ImportError("executor='ray' needs Ray; pip install torchrl-ext[ray]") from err
    return ray


class EpisodeActor:
    """Actor body: one env and agent, one episode per call."""

    def __init__(self, env_fn, policy_fn, max_steps: int, events_fn: EventsFn | None, worker_id: int,
                 encoder: FrameEncoder | None = None) -> None:
        self.env = env_fn()
        self.agent = make_agent(policy_fn, self.env)
        self.max_steps, self.events_fn, self.worker_id = max_steps, events_fn, worker_id
        self.encoder = encoder

    def ready(self) -> bool:
        return True

    def run(self, seed: int) -> Episode:
        result = rollout(self.env, self.agent, seed, self.max_steps, self.events_fn)
        result["metadata"]["worker"] = self.worker_id
        if self.encoder:
            self.encoder(result)
        return result


class RayExecutor:
    """Plays episodes in ``num_workers`` Ray actors."""

    def __init__(self, env_fn, policy_fn, *, max_steps: int, events_fn: EventsFn | None = None,
                 num_workers: int = 1, max_restarts: int = 3, address: str | None = None,
                 encoder: FrameEncoder | None = None) -> None:
        ray = self._ray = import_ray()
        self._temp_dir = None
        self._owns_cluster = False
        self._restore: tuple[str | None, Any] | None = None
        if not ray.is_initialized():
            if address is None:
                self._local_only()
                self._temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
                # actors import env_fn/policy_fn from the same places as this process
                paths = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
                try:
                    ray.init(num_cpus=num_workers, include_dashboard=False, _temp_dir=self._temp_dir,
                             log_to_driver=False, logging_level=logging.WARNING,
                             runtime_env={"env_vars": {"PYTHONPATH": paths}})
                except BaseException:
                    self._undo_local()
                    raise
            else:
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
            self._owns_cluster = True
        self._actor_cls = ray.remote(num_cpus=1, max_restarts=max_restarts, max_task_retries=0)(EpisodeActor)
        self._args = (env_fn, policy_fn, max_steps, events_fn)
        self.max_restarts = max_restarts
        self.restarts = 0
        self._failures = [0] * num_workers
        self._actors = [self._actor_cls.remote(*self._args, wid, encoder) for wid in range(num_workers)]
        self._jobs: dict[Any, tuple[int, tuple[int, int]]] = {}  # ref -> (worker, (episode, seed))
        self._queue: deque[tuple[int, int]] = deque()
        self._pings: dict[Any, int] = {}  # ref -> worker waiting to come back after a restart

    def _local_only(self) -> None:
        """Makes the private cluster listen on loopback only (undone by :meth:`close`)."""
        self._restore = loopback_only()

    @property
    def in_flight(self) -> int:
        return len(self._queue) + len(self._jobs)

    def submit(self, episode: int, seed: int) -> None:
        self._queue.append((episode, seed))
        self._dispatch()

    def _dispatch(self) -> None:
        busy = {wid for wid, _ in self._jobs.values()} | set(self._pings.values())
        for wid, actor in enumerate(self._actors):
            if wid not in busy and self._queue:
                job = self._queue.popleft()
                self._jobs[actor.run.remote(job[1])] = (wid, job)

    def wait(self, timeout: float | None = 1.0) -> list[tuple[int, Episode]]:
        """Blocks until an actor finishes or fails; returns finished ``(episode, result)`` pairs."""
        ray = self._ray
        done = []
        if self._jobs or self._pings:
            ready, _ = ray.wait([*self._jobs, *self._pings], num_returns=1, timeout=timeout)
            for ref in ready:
                if ref in self._pings:
                    self._check_back(ref)
                    continue
                wid, job = self._jobs.pop(ref)
                try:
                    done.append((job[0], ray.get(ref)))
                except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as err:
                    self._failed(wid, job, err)
        self._dispatch()
        return done

    def _failed(self, wid: int, job: tuple[int, int], err: Exception) -> None:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        if isinstance(err, EncodeError) or isinstance(getattr(err, "cause", None), EncodeError):
            raise WorkerFailed(
                f"generation actor {wid} could not encode episode {job[0]}: {reason}; nothing is retried "
                "(every episode would fail the same way)"
            ) from err
        if isinstance(err, ResetError) or isinstance(getattr(err, "cause", None), ResetError):
            raise WorkerFailed(
                f"generation actor {wid} could not start episode {job[0]}: {reason}; fix `env_fn`/`policy_fn` "
                "(nothing is retried: the same seed fails the same way)"
            ) from err
        if self._failures[wid] >= self.max_restarts:
            raise WorkerFailed(
                f"generation actor {wid} failed {self._failures[wid] + 1} times "
                f"(max_restarts={self.max_restarts}); last failure: {reason}"
            ) from err
        self._failures[wid] += 1
        self.restarts += 1
        logger.warning("actor %d failed (%s) during episode %d; retrying", wid, reason, job[0])
        if isinstance(err, self._ray.exceptions.RayTaskError):
            # the env raised: restart the actor so the retry starts from a fresh env
            self._ray.kill(self._actors[wid], no_restart=False)
        self._queue.appendleft(job)
        self._pings[self._actors[wid].ready.remote()] = wid

    def _check_back(self, ref) -> None:
        """An actor is idle again once it answers; while Ray restarts it, ask again."""
        ray = self._ray
        wid = self._pings.pop(ref)
        try:
            ray.get(ref)
        except ray.exceptions.ActorDiedError as err:
            raise WorkerFailed(f"generation actor {wid} could not be restarted: {err}") from err
        except ray.exceptions.RayActorError:
            time.sleep(0.05)
            self._pings[self._actors[wid].ready.remote()] = wid

    def close(self) -> None:
        ray = self._ray
        for actor in self._actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # already gone
                pass
        self._actors = []
        if self._owns_cluster:
            ray.shutdown()
        self._undo_local()

    def _undo_local(self) -> None:
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
        if self._restore is not None:
            restore(self._restore)
            self._restore = None
