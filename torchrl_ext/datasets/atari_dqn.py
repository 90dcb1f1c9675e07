"""``AtariDQNExperienceReplay``: TorchRL's Atari DQN dataset constructor over a sharded dataset.

Samples hold ``observation`` uint8 ``[84, 84]`` (``[stack, 84, 84]`` with
``stack``), ``action`` int32, ``done``/``terminated``/``truncated`` bool ``[1]``,
``("next", "observation")``, ``("next", "reward")`` float32 ``[1]``,
``("next", "done"/"terminated"/"truncated")`` bool ``[1]``, plus ``episode``,
``step`` and ``index``. Unlike ``torchrl.data.datasets.AtariDQNExperienceReplay``
it never samples padding rows, never mixes episodes across checkpoint
boundaries, and reads each frame once per sample.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from torchrl.data.replay_buffers import (
    ImmutableDatasetWriter,
    SamplerWithoutReplacement,
    SliceSampler,
    SliceSamplerWithoutReplacement,
    TensorDictReplayBuffer,
)

from ..sources.atari_dqn import DONE_NAME, convert_replay_logs, list_checkpoints
from ..preprocessing import preprocess_buffer
from .frame_stack import FrameStackStorage

__all__ = ["ATARI_GAMES", "AtariDQNExperienceReplay", "prepare_atari_dqn", "resolve_replay_dir"]

logger = logging.getLogger(__name__)

ATARI_GAMES = (
    "AirRaid Alien Amidar Assault Asterix Asteroids Atlantis BankHeist BattleZone BeamRider Berzerk "
    "Bowling Boxing Breakout Carnival Centipede ChopperCommand CrazyClimber DemonAttack DoubleDunk "
    "ElevatorAction Enduro FishingDerby Freeway Frostbite Gopher Gravitar Hero IceHockey Jamesbond "
    "JourneyEscape Kangaroo Krull KungFuMaster MontezumaRevenge MsPacman NameThisGame Phoenix Pitfall "
    "Pong Pooyan PrivateEye Qbert Riverraid RoadRunner Robotank Seaquest Skiing Solaris SpaceInvaders"
).split()


class _ClassProperty:
    def __init__(self, fget) -> None:
        self.fget = fget

    def __get__(self, obj, owner):
        return self.fget(owner)


def _parse_id(dataset_id: Any) -> tuple[str, int]:
    game, _, run = str(dataset_id).partition("/")
    if not isinstance(dataset_id, str) or game not in ATARI_GAMES or run not in {"1", "2", "3", "4", "5"}:
        raise ValueError(
            f"`dataset_id` must be '<game>/<run>' with run 1-5 and a game of "
            f"AtariDQNExperienceReplay.available_datasets (e.g. 'Pong/5'), got {dataset_id!r}"
        )
    return game, int(run)


def resolve_replay_dir(local_dir: str | os.PathLike, game: str, run: int) -> Path:
    """Finds the replay logs of ``game``/``run`` under ``local_dir``.

    Accepts the bucket layout (``<local_dir>/<game>/<run>/replay_logs``), a run
    directory, or the ``replay_logs`` directory itself.
    """
    base = Path(local_dir)
    for cand in (base / game / str(run) / "replay_logs", base / game / str(run), base):
        if cand.is_dir() and list_checkpoints(cand):
            return cand
    raise FileNotFoundError(
        f"{base}: no replay logs for {game}/{run}; expected {base}/{game}/{run}/replay_logs/"
        "$store$_observation_ckpt.<i>.gz or the files directly in it"
    )


def prepare_atari_dqn(
    dataset_id: str,
    root: str | os.PathLike,
    *,
    download: bool | str = True,
    local_dir: str | os.PathLike | None = None,
    bucket: str | None = None,
    prefix: str | None = None,
    checkpoints: list[int] | None = None,
    num_procs: int = 1,
    keep_download: bool = False,
) -> Path:
    """Downloads (or reads ``local_dir``) and converts one run; returns the dataset directory."""
    game, run = _parse_id(dataset_id)
    path = Path(root) / game / str(run)
    if download == "force" and path.exists():
        shutil.rmtree(path)
    if (path / DONE_NAME).is_file():
        return path
    if not download and local_dir is None:
        raise FileNotFoundError(
            f"{path}: no converted dataset for {dataset_id}; pass download=True, or local_dir= "
            "with the replay logs"
        )
    downloaded = None
    if local_dir is not None:
        src = resolve_replay_dir(local_dir, game, run)
    else:
        from ..sources.gcs import download_atari_run

        downloaded = Path(root) / ".downloads" / game / str(run)
        kw = {k: v for k, v in (("bucket", bucket), ("prefix", prefix)) if v is not None}
        download_atari_run(game, run, downloaded / "replay_logs", checkpoints=checkpoints, **kw)
        src = downloaded
    convert_replay_logs(src, path, checkpoints=checkpoints, num_procs=max(1, int(num_procs)),
                        game=game, run=run)
    if downloaded is not None and not keep_download:
        shutil.rmtree(downloaded, ignore_errors=True)
    return path


class AtariDQNExperienceReplay(TensorDictReplayBuffer):
    """The Atari DQN Replay Dataset as a TorchRL replay buffer over a sharded dataset.

    Same constructor as ``torchrl.data.datasets.AtariDQNExperienceReplay``; the
    logs come from the public bucket without gsutil (or from ``local_dir``) and
    are converted once, streaming and resumably, into ``<root>/<game>/<run>``.

    Args:
        dataset_id: ``"<game>/<run>"``, e.g. ``"Pong/5"`` (see :attr:`available_datasets`).
        batch_size: default sample size.

    Keyword Args:
        root: where converted datasets live (default ``~/.cache/torchrl_ext/atari``).
        download: ``True`` (if missing), ``False`` or ``"force"`` (convert again).
        sampler, writer, transform: as in ``TensorDictReplayBuffer``; the writer
            defaults to ``ImmutableDatasetWriter``.
        num_procs: processes decompressing checkpoints in parallel.
        num_slices, slice_len, strict_len, replacement: build a ``SliceSampler``
            (``SliceSamplerWithoutReplacement``) over episodes when no sampler is given.
        mp_start_method: accepted for compatibility (conversion uses ``spawn``).
        stack: frames per observation (``4`` gives ``[4, 84, 84]``), never crossing episodes.
        stack_pad: ``"zeros"`` or ``"first"``: padding before an episode's first frame.
        bucket, prefix: the GCS bucket and top-level prefix (a mirror's, for example).
        local_dir: read replay logs from here instead of downloading.
        checkpoints: convert only these checkpoint indices.
        **kwargs: passed to ``TensorDictReplayBuffer`` (``prefetch``, ``pin_memory``, ...).
    """

    available_datasets = _ClassProperty(
        lambda cls: [f"{game}/{run}" for game in ATARI_GAMES for run in range(1, 6)]
    )

    def __init__(
        self,
        dataset_id: str,
        batch_size: int | None = None,
        *,
        root: str | Path | None = None,
        download: bool | str = True,
        sampler: Any = None,
        writer: Any = None,
        transform: Any = None,
        num_procs: int = 0,
        num_slices: int | None = None,
        slice_len: int | None = None,
        strict_len: bool = True,
        replacement: bool = True,
        mp_start_method: str = "fork",
        stack: int = 1,
        stack_pad: str = "zeros",
        bucket: str | None = None,
        prefix: str | None = None,
        local_dir: str | Path | None = None,
        checkpoints: list[int] | None = None,
        **kwargs: Any,
    ) -> None:
        if download not in (True, False, "force"):
            raise ValueError(f"`download` must be True, False or 'force', got {download!r}")
        self.dataset_id = dataset_id
        self.root = Path(root) if root is not None else Path.home() / ".cache" / "torchrl_ext" / "atari"
        self.mp_start_method = mp_start_method
        self.dataset_path = prepare_atari_dqn(
            dataset_id, self.root, download=download, local_dir=local_dir, bucket=bucket,
            prefix=prefix, checkpoints=checkpoints, num_procs=num_procs,
        )
        storage = FrameStackStorage(self.dataset_path, stack=stack, pad=stack_pad)
        if sampler is None:
            if num_slices is not None or slice_len is not None:
                cls = SliceSampler if replacement else SliceSamplerWithoutReplacement
                extra = {"cache_values": True} if replacement else {}
                sampler = cls(num_slices=num_slices, slice_len=slice_len, strict_length=strict_len,
                              trajectories=storage.episodes, **extra)
            elif not replacement:
                sampler = SamplerWithoutReplacement()
        super().__init__(
            storage=storage,
            batch_size=batch_size,
            writer=writer if writer is not None else ImmutableDatasetWriter(),
            sampler=sampler,
            transform=transform,
            **kwargs,
        )

    @property
    def episodes(self):
        """Episode id of every row, for ``SliceSampler(trajectories=...)``."""
        return self._storage.episodes

    def preprocess(self, fn, dim=0, num_workers=None, *, chunksize=None, num_chunks=None, pool=None,
                   generator=None, max_tasks_per_child=None, worker_threads=1, index_with_generator=False,
                   pbar=False, mp_start_method=None, num_frames=None, dest, **kwargs):
        """TorchRL's ``preprocess``: writes ``fn`` over every row into a new sharded dataset at ``dest``.

        Returns the new storage, as TorchRL does; pass ``swap=True`` to also make this
        buffer sample from it. See :func:`torchrl_ext.preprocess`.
        """
        return preprocess_buffer(self, fn, dim, num_workers, dest=dest, chunksize=chunksize,
                                 num_chunks=num_chunks, pool=pool, generator=generator,
                                 max_tasks_per_child=max_tasks_per_child, worker_threads=worker_threads,
                                 index_with_generator=index_with_generator, pbar=pbar,
                                 mp_start_method=mp_start_method, num_frames=num_frames, **kwargs)
