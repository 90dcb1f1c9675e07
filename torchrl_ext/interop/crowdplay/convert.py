"""CrowdPlay dataset directory -> sharded dataset: one pass, one trajectory in memory, resumable.

Each (CrowdPlay episode, agent) becomes one dataset episode in TorchRL's TED
layout:

* ``observation``: ``prev_obs[agent]["image"]`` (uint8 ``[210, 160, 3]``),
  stored losslessly (zstd) by default; the trajectory has no frame after
  the last step, so ``("next", "observation")`` at an episode's last step is zeros;
* ``action`` (int64): ``action[agent]["game"]``;
* ``("next", "reward")`` (float32 ``[1]``): ``reward[agent]``;
* ``("next", "terminated")``: ``done[agent]``; ``("next", "truncated")``: True
  at the last step when the game did not end it (the player left);
  ``("next", "done")``: either;
* ``ram`` (uint8 ``[128]``): ``info[agent]["RAM"]``; ``lives`` (int8):
  ``info[agent]["ale.lives"]`` (0 when missing); ``user_type`` (int8): 1
  human, 2 AI policy, 0 when the step does not say.

Metadata as :mod:`.metadata` describes, plus ``user_type`` (the most common
per-step value) and ``trajectory_file`` (relative to the CrowdPlay directory).
Events: ``reward`` (value: the reward) at each step with a non-zero reward and
``life_lost`` where ``lives`` drops, for :class:`~torchrl_ext.EventIndex`.

Resuming: the dataset's manifest records the source (directory and a digest of
its episode ids); run the import again and it continues after the last
committed (episode, agent), which the episode table names.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...format import MANIFEST_NAME, FormatError, read_manifest
from ...progress import ProgressBar
from ...validation import user_path
from ...writer import EpisodeTable, ShardWriter
from .layout import CrowdPlayDir, CrowdPlayEpisode, load_trajectory, trajectory_agents
from .metadata import MetadataPlan

__all__ = ["DEFAULT_ENCODINGS", "SOURCE_KIND", "agent_episode", "import_crowdplay"]

logger = logging.getLogger(__name__)

SOURCE_KIND = "crowdplay"
RAM_BYTES = 128
DEFAULT_ENCODINGS: dict[str, Any] = {"observation": {"name": "zstd", "level": 9}, "ram": "zstd"}
"""Lossless: zstd level 9 frames in 16-row chunks (random rows stay cheap to read), zstd RAM."""


def _fingerprint(episodes: Sequence[CrowdPlayEpisode]) -> str:
    h = hashlib.sha256()
    for ep in episodes:
        h.update(ep.episode_id.encode("utf-8") + b"\n")
    return h.hexdigest()[:32]


def agent_episode(steps: list[dict[str, Any]], agent: str, where: str
                  ) -> tuple[dict[str, Any], list[tuple[int, str, float]], int]:
    """One agent's stream of a trajectory as TED columns, its events and its usual ``user_type``.

    The frames are copied out of the step dicts and the agent's entries
    released, so a trajectory is held about once in memory.

    Raises:
        FormatError: a step lacks a field CrowdPlay always records, or a frame's shape changes.
    """
    n = len(steps)
    try:
        shape = np.shape(steps[0]["prev_obs"][agent]["image"])
    except (KeyError, TypeError) as err:
        raise FormatError(f"{where}: step 0 has no prev_obs[{agent!r}]['image'] ({err!r}); not a CrowdPlay "
                          "trajectory") from None
    frames = np.empty((n, *shape), np.uint8)
    actions = np.empty(n, np.int64)
    rewards = np.empty(n, np.float32)
    dones = np.empty(n, bool)
    ram = np.zeros((n, RAM_BYTES), np.uint8)
    lives = np.zeros(n, np.int8)
    user_type = np.zeros(n, np.int8)
    for t, step in enumerate(steps):
        try:
            obs = step["prev_obs"][agent]
            frame = np.asarray(obs["image"])
            if frame.shape != shape:
                raise ValueError(f"frame shape {frame.shape}, step 0 has {shape}")
            frames[t] = frame
            step["prev_obs"][agent] = None  # release the frame
            act = step["action"][agent]
            actions[t] = act["game"] if isinstance(act, Mapping) else act
            rewards[t] = step["reward"][agent]
            dones[t] = bool(step["done"][agent])
            info = (step.get("info") or {}).get(agent) or {}
            if "RAM" in info:
                ram[t] = np.asarray(info["RAM"], dtype=np.int64)
            lives[t] = int(info.get("ale.lives", 0))
            user_type[t] = int((step.get("user_type") or {}).get(agent, 0))
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise FormatError(f"{where}: step {t} of agent {agent!r} is malformed ({type(err).__name__}: {err}); "
                              "not a CrowdPlay trajectory") from None
    truncated = np.zeros(n, bool)
    truncated[-1] = not dones[-1]
    td = {"observation": frames, "action": actions, "ram": ram, "lives": lives, "user_type": user_type,
          "next": {"reward": rewards[:, None], "terminated": dones[:, None], "truncated": truncated[:, None],
                   "done": (dones | truncated)[:, None]}}
    events = [(int(t), "reward:+1" if rewards[t] > 0 else "reward:-1", float(rewards[t]))
              for t in np.flatnonzero(rewards)]  # named as every other source names them
    events += [(int(t), "life_lost", 1.0) for t in np.flatnonzero(np.diff(lives) < 0) + 1]
    values, counts = np.unique(user_type, return_counts=True)
    return td, sorted(events), int(values[np.argmax(counts)])


def _written(root: Path, num_episodes: int) -> list[tuple[str, str]]:
    if num_episodes == 0:  # stopped before its first commit: the table has no metadata columns yet
        return []
    table = EpisodeTable.from_dataset(root, read_manifest(root).episodes)
    try:
        return [(str(e), str(a)) for e, a in table.values(("episode_id", "agent_id"), num_episodes=num_episodes)]
    finally:
        table.close()


def _open_writer(root: Path, source: dict[str, Any], shard_rows: int | None, shard_bytes: int | None,
                 encodings: Mapping[str, Any]) -> tuple[ShardWriter, list[tuple[str, str]]]:
    if not (root / MANIFEST_NAME).exists():
        return ShardWriter.create(root, shard_rows=shard_rows, shard_bytes=shard_bytes, source=source,
                                  encodings=dict(encodings)), []
    found = read_manifest(root).source
    if found.get("kind") != SOURCE_KIND or found.get("fingerprint") != source["fingerprint"]:
        raise ValueError(
            f"`root` {root} holds a dataset imported from {found.get('dir', found.get('kind'))!r}, not from "
            f"{source['dir']!r} (or its episodes changed); choose a new `root` for this import")
    writer = ShardWriter.open(root)
    try:
        return writer, _written(root, writer.num_episodes)
    except BaseException:
        writer.close()
        raise


def import_crowdplay(src: str | os.PathLike, root: str | os.PathLike, *, encodings: Mapping[str, Any] | None = None,
                     shard_rows: int | None = None, shard_bytes: int | None = None, skip_missing: bool = False,
                     progress: bool = True) -> Any:
    """Imports the CrowdPlay dataset in ``src`` into a new (or partly imported) dataset at ``root``.

    Args:
        src: the directory holding ``dataset.sqlite``; trajectory files are found under it.
        root: dataset directory to write; an interrupted import there resumes.
        encodings: column encodings (default :data:`DEFAULT_ENCODINGS`, lossless).
        shard_rows, shard_bytes: shard size (see :meth:`torchrl_ext.ShardWriter.create`).
        skip_missing: skip episodes whose trajectory file is missing (logged)
            instead of raising.
        progress: show a progress bar over CrowdPlay episodes (frames written beside
            them); a resumed import starts it at the episodes already there.

    Returns:
        A :class:`~torchrl_ext.ShardedStorage` over ``root``.

    Raises:
        FileNotFoundError: ``src`` has no ``dataset.sqlite``.
        FormatError: a corrupt SQLite file or trajectory, or a missing
            trajectory file (unless ``skip_missing``).
        UnsafePickleError: a pickle that needs more than plain data.
        ValueError: ``root`` holds a dataset imported from elsewhere.
    """
    from ...storages import ShardedStorage

    source_dir = CrowdPlayDir(src)
    plan = MetadataPlan(source_dir.episodes)
    root = user_path(root, "root")
    source = {"kind": SOURCE_KIND, "dir": str(source_dir.path.resolve()), "episodes": len(source_dir),
              "fingerprint": _fingerprint(source_dir.episodes)}
    writer, written = _open_writer(root, source, shard_rows, shard_bytes, DEFAULT_ENCODINGS if encodings is None else encodings)
    done = set(written)
    last = written[-1][0] if written else None
    seen = {e for e, _ in written}
    if written:
        logger.info("%s: resuming; %d of %d episodes (%d per-player episodes) were already imported, continuing "
                    "from episode %s", root, len(seen), len(source_dir), len(written), last)
    # the episodes already there count from the start, the last of them too (its other players follow)
    bar = ProgressBar("import crowdplay", len(source_dir), unit="episode", initial=len(seen), enabled=progress)
    frames, completed = 0, False
    try:
        for ep in source_dir.episodes:
            if ep.episode_id in seen and ep.episode_id != last:
                continue
            if ep.trajectory is None:
                message = (f"{source_dir.path}: episode {ep.episode_id} has no trajectory file "
                           f"({ep.episode_id}.pickle, .pickle.gz or .pickle.bz2) under the directory")
                if skip_missing:
                    logger.warning("%s; skipped", message)
                    bar.update(0 if ep.episode_id == last else 1)
                    continue
                raise FormatError(f"{message}; restore it, or pass skip_missing=True to import the rest")
            steps = load_trajectory(ep.trajectory)
            where = str(ep.trajectory)
            for agent in trajectory_agents(steps, where):
                if (ep.episode_id, agent) in done:
                    continue
                td, events, user_type = agent_episode(steps, agent, where)
                extra = {"user_type": user_type,
                         "trajectory_file": ep.trajectory.relative_to(source_dir.path).as_posix()}
                writer.add_episode(td, metadata=plan.metadata(ep, agent, extra), events=events)
                frames += len(td["action"])
            del steps
            bar.update(0 if ep.episode_id == last else 1, frames=frames)
        writer.flush()
        completed = True
    finally:
        bar.close(completed=completed)
        writer.close()
    return ShardedStorage(root)
