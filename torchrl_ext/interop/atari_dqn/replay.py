"""``AtariDQNExperienceReplay``: TorchRL's Atari DQN dataset constructor over sharded datasets.

Samples hold ``observation`` uint8 ``[84, 84]`` (``[stack, 84, 84]`` with
``stack``), ``action`` int32, ``done``/``terminated``/``truncated`` bool ``[1]``,
``("next", "observation")``, ``("next", "reward")`` float32 ``[1]``,
``("next", "done"/"terminated"/"truncated")`` bool ``[1]``, plus ``episode``,
``step`` and ``index``.

``layout="torchrl"`` gives exactly what ``torchrl.data.datasets.AtariDQNExperienceReplay``
returns, as its code builds it (torchrl 0.14, ``_AtariStorage._proc_td``; its
docstring's printouts disagree on the flags' shapes): ``observation`` uint8
``[84, 84]``, ``action`` int32, ``done``/``terminated``/``truncated`` uint8
``[]`` (zeros), ``("next", "observation")``, ``("next", "reward")`` float32
``[]``, ``("next", "done"/"terminated")`` uint8 (the terminal flag),
``("next", "truncated")`` uint8 zeros, ``metadata`` (the ``add_count``,
``invalid_range`` and ``dataset_id`` of the checkpoint file the row was read
from, see :mod:`.checkpoint_files`), and ``index`` from the buffer.

``action`` is int32 in both layouts: Dopamine logs actions as int32 and
TorchRL's class keeps the logged dtype (``torch.as_tensor`` of the loaded
array). TorchRL's environments describe discrete actions as int64
(``Categorical``); a policy trained against one casts with ``.long()``.

Unlike ``torchrl.data.datasets.AtariDQNExperienceReplay``
it never samples padding rows, never mixes episodes across checkpoint
boundaries, keeps the run's last (final) checkpoint, and reads each frame
once per sample.

Several runs or games at once: pass a list of ids (``["Pong/1", "Pong/2",
"Breakout/1"]``). The buffer samples uniformly over the transitions of all of
them (one :class:`MultiRunStorage`; episode ids are unique across runs, frame
stacks and slices never cross a run). To weight games instead, build one buffer
per id and combine them with TorchRL's ``ReplayBufferEnsemble(*buffers, p=...)``.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torchrl.data.datasets.common import BaseDatasetExperienceReplay
from torchrl.data.replay_buffers import (
    ImmutableDatasetWriter,
    SamplerWithoutReplacement,
    SliceSampler,
    SliceSamplerWithoutReplacement,
)

from ...compat.torchrl_buffers import ConcurrentReads
from ...datasets.frame_stack import FrameStackStorage
from ...datasets.multi_run import MultiRunStorage
from ...format.files import loads_json
from ...preprocessing import preprocess_buffer
from ...validation import user_path
from .checkpoint_files import CheckpointFiles
from .convert import CONVERTER_VERSION, DONE_NAME
from .runs import convert_atari_run, convert_atari_runs, resolve_replay_dir

__all__ = ["ATARI_GAMES", "AtariDQNExperienceReplay", "TorchRLLayoutStorage", "prepare_atari_dqn", "resolve_replay_dir"]

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


def _ids(dataset_id: Any) -> list[str]:
    ids = [dataset_id] if isinstance(dataset_id, str) else list(dataset_id) if isinstance(dataset_id, Sequence) else [dataset_id]
    if not ids:
        raise ValueError("`dataset_id` is an empty list; expected '<game>/<run>' ids such as ['Pong/1', 'Pong/2']")
    for i in ids:
        _parse_id(i)
    if len(set(ids)) != len(ids):
        raise ValueError(f"`dataset_id` must not repeat a run, got {ids!r}")
    return ids


def _is_done(path: Path) -> bool:
    done = path / DONE_NAME
    if not done.is_file():
        return False
    if loads_json(done.read_text(encoding="utf-8")).get("converter") != CONVERTER_VERSION:
        logger.warning("%s was converted by an older version that dropped each run's final checkpoint; "
                       "pass download='force' to convert it again", path)
    return True


def prepare_atari_dqn(
    dataset_id: str | Sequence[str],
    root: str | os.PathLike,
    *,
    download: bool | str = True,
    local_dir: str | os.PathLike | None = None,
    bucket: str | None = None,
    prefix: str | None = None,
    checkpoints: list[int] | None = None,
    num_procs: int = 1,
    keep_download: bool = False,
    encodings: dict[str, Any] | None = None,
    executor: str = "process",
    address: str | None = None,
    deadline: float | None = None,
) -> Path | list[Path]:
    """Converts runs that are not converted yet; returns the dataset directory (a list for a list of ids).

    Args:
        dataset_id: ``"<game>/<run>"`` or a list of them.
        root: directory of converted runs (``<root>/<game>/<run>``).
        download: ``True`` (convert what is missing), ``False`` (require converted runs,
            unless ``local_dir`` is given) or ``"force"`` (convert again).
        local_dir: read replay logs from here instead of the bucket.
        bucket, prefix: the bucket and top-level prefix (a mirror's, for example).
        checkpoints: convert only these checkpoint indices.
        num_procs: runs converted at once when several need converting.
        keep_download: download the ``.gz`` files into ``<root>/.downloads`` and keep them
            (default: stream them, nothing is stored but the datasets).
        encodings: column encodings of new datasets, e.g. ``{"observation": "zstd"}``.
        executor, address: as in :func:`~torchrl_ext.sources.convert_atari_runs`.
        deadline: seconds a download may go without data before it fails (default 600).
    """
    ids = _ids(dataset_id)
    root = user_path(root, "root")
    paths = [root / g / str(r) for g, r in map(_parse_id, ids)]
    todo = [i for i, p in zip(ids, paths) if download == "force" or not _is_done(p)]
    if todo and not download and local_dir is None:
        raise FileNotFoundError(
            f"{paths[ids.index(todo[0])]}: no converted dataset for {todo[0]}; pass download=True, or local_dir= "
            "with the replay logs"
        )
    if download == "force":
        for i in todo:
            shutil.rmtree(paths[ids.index(i)], ignore_errors=True)
    kw = {"local_dir": local_dir, "bucket": bucket, "prefix": prefix, "checkpoints": checkpoints,
          "keep_download": keep_download, "encodings": encodings,
          **({"deadline": deadline} if deadline is not None else {})}
    if len(todo) > 1 and (num_procs > 1 or executor == "ray"):
        convert_atari_runs(todo, root, executor=executor, num_workers=max(1, int(num_procs)), address=address, **kw)
    else:
        for i in todo:
            convert_atari_run(i, root, **kw)
    return paths[0] if isinstance(dataset_id, str) else paths


class TorchRLLayoutStorage(FrameStackStorage):
    """A converted run's rows exactly as ``torchrl.data.datasets.AtariDQNExperienceReplay`` returns them.

    :func:`~torchrl_ext.datasets.frame_stack.torchrl_layout` gives the keys,
    dtypes and shapes; this adds ``metadata``, the ``add_count``,
    ``invalid_range`` and ``dataset_id`` of the checkpoint file each row was
    read from (:class:`.checkpoint_files.CheckpointFiles`).

    Args:
        root: the converted run (``<root>/<game>/<run>``, holding ``atari_dqn.json``).
        stack, pad: frame stacking, as in :class:`~torchrl_ext.datasets.FrameStackStorage`.
        files: the run's checkpoint files (default: read from ``root``); a
            preprocessed copy keeps the files of the run it was made from.
        **kwargs: passed to :class:`~torchrl_ext.ShardedStorage` (``device``, ``cache_bytes``, ...).
    """

    def __init__(self, root: str | os.PathLike, *, stack: int = 1, pad: str = "zeros",
                 files: CheckpointFiles | None = None, **kwargs: Any) -> None:
        super().__init__(root, stack=stack, pad=pad, layout="torchrl", **kwargs)
        self.files = files if files is not None else CheckpointFiles.of_storage(self, Path(self.root) / DONE_NAME)

    def get(self, index: Any) -> Any:
        return self.files.attach(super().get(index), self.reader.index_array(index))

    def at(self, root: str | os.PathLike) -> TorchRLLayoutStorage:
        """This layout over a preprocessed copy of the run (rows aligned), with the run's checkpoint files."""
        return TorchRLLayoutStorage(root, stack=self.stack, pad=self.pad, files=self.files, device=self.device,
                                    cache_bytes=self.cache_bytes, verify=self.reader.verify_mode)


class AtariDQNExperienceReplay(ConcurrentReads, BaseDatasetExperienceReplay):
    """The Atari DQN Replay Dataset as a TorchRL replay buffer over sharded datasets.

    Same constructor as ``torchrl.data.datasets.AtariDQNExperienceReplay``; the
    logs are streamed from the public bucket without gsutil (or read from
    ``local_dir``) and converted once, in one pass and resumably, into
    ``<root>/<game>/<run>``.

    Args:
        dataset_id: ``"<game>/<run>"``, e.g. ``"Pong/5"`` (see :attr:`available_datasets`),
            or a list of them: one buffer sampling uniformly over all their transitions.
        batch_size: default sample size.

    Keyword Args:
        root: where converted datasets live (default ``~/.cache/torchrl_ext/atari``).
        download: ``True`` (if missing), ``False`` or ``"force"`` (convert again).
        sampler, writer, transform: as in ``TensorDictReplayBuffer``; the writer
            defaults to ``ImmutableDatasetWriter``.
        num_procs: runs converted at once (processes) when several need converting.
        num_slices, slice_len, strict_len, replacement: build a ``SliceSampler``
            (``SliceSamplerWithoutReplacement``) over episodes when no sampler is given.
        mp_start_method: accepted for compatibility (conversion uses ``spawn``).
        stack: frames per observation (``4`` gives ``[4, 84, 84]``), never crossing episodes.
        stack_pad: ``"zeros"`` or ``"first"``: padding before an episode's first frame.
        bucket, prefix: the GCS bucket and top-level prefix (a mirror's, for example).
        local_dir: read replay logs from here instead of downloading.
        checkpoints: convert only these checkpoint indices.
        keep_download: keep the downloaded ``.gz`` files in ``<root>/.downloads`` (default: stream).
        encodings: column encodings of new datasets (default: observations as per-frame
            zstd with a dictionary; ``{"observation": "raw"}`` for memory maps).
        layout: ``"torchrl_ext"`` (default: TorchRL's env convention, bool flags
            ``[B, 1]``, reward ``[B, 1]``, ``episode``/``step`` keys) or ``"torchrl"``
            (exactly the keys, shapes and dtypes of TorchRL's own class: uint8
            flags ``[B]``, reward ``[B]``, ``metadata`` of each row's checkpoint
            file; see :class:`TorchRLLayoutStorage`), for code written against it.
            ``action`` is int32 in both, as Dopamine logs it and as TorchRL's
            class returns it (see the module doc).
        **kwargs: passed to ``TensorDictReplayBuffer`` (``prefetch``, ``pin_memory``, ...).

    Like every TorchRL dataset it has :attr:`data_path`, :attr:`data_path_root`,
    :meth:`delete` and :meth:`preprocess`.
    """

    available_datasets = _ClassProperty(
        lambda cls: [f"{game}/{run}" for game in ATARI_GAMES for run in range(1, 6)]
    )

    def __init__(
        self,
        dataset_id: str | Sequence[str],
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
        keep_download: bool = False,
        encodings: dict[str, Any] | None = None,
        layout: str = "torchrl_ext",
        **kwargs: Any,
    ) -> None:
        if download not in (True, False, "force"):
            raise ValueError(f"`download` must be True, False or 'force', got {download!r}")
        self.dataset_id = dataset_id
        self.root = user_path(root, "root") if root is not None else Path.home() / ".cache" / "torchrl_ext" / "atari"
        self.mp_start_method = mp_start_method
        paths = prepare_atari_dqn(
            _ids(dataset_id), self.root, download=download, local_dir=local_dir, bucket=bucket,
            prefix=prefix, checkpoints=checkpoints, num_procs=max(1, int(num_procs)),
            keep_download=keep_download, encodings=encodings,
        )
        parts = [TorchRLLayoutStorage(p, stack=stack, pad=stack_pad) if layout == "torchrl"
                 else FrameStackStorage(p, stack=stack, pad=stack_pad, layout=layout) for p in paths]
        if isinstance(dataset_id, str):
            self.dataset_path = paths[0]
            storage = parts[0]
        else:
            self.dataset_path = paths
            storage = MultiRunStorage(parts, names=list(dataset_id))
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
    def data_path(self) -> Path | list[Path]:
        """The converted dataset directory (a list for several runs)."""
        return self.dataset_path

    @property
    def data_path_root(self) -> Path:
        """Where converted datasets live (``root``)."""
        return self.root

    def _is_downloaded(self) -> bool:
        paths = self.dataset_path if isinstance(self.dataset_path, list) else [self.dataset_path]
        return all((Path(p) / DONE_NAME).is_file() for p in paths)

    def delete(self) -> None:
        """Deletes the converted dataset(s) from disk (the buffer can no longer sample)."""
        for p in self.dataset_path if isinstance(self.dataset_path, list) else [self.dataset_path]:
            shutil.rmtree(p)

    @property
    def episodes(self):
        """Episode id of every row, for ``SliceSampler(trajectories=...)``."""
        return self._storage.episodes

    def preprocess(self, fn, dim=0, num_workers=None, *, chunksize=None, num_chunks=None, pool=None,
                   generator=None, max_tasks_per_child=None, worker_threads=1, index_with_generator=False,
                   pbar=False, mp_start_method=None, num_frames=None, dest, **kwargs):
        """TorchRL's ``preprocess``: writes ``fn`` over every row into a new sharded dataset at ``dest``.

        Returns the new storage, as TorchRL does; pass ``swap=True`` to also make this
        buffer sample from it. See :func:`torchrl_ext.preprocess`. One run at a time.
        """
        if isinstance(self._storage, MultiRunStorage):
            raise ValueError("preprocess works on one run; build one AtariDQNExperienceReplay per id and "
                             "preprocess each")
        new = preprocess_buffer(self, fn, dim, num_workers, dest=dest, chunksize=chunksize,
                                num_chunks=num_chunks, pool=pool, generator=generator,
                                max_tasks_per_child=max_tasks_per_child, worker_threads=worker_threads,
                                index_with_generator=index_with_generator, pbar=pbar,
                                mp_start_method=mp_start_method, num_frames=num_frames, **kwargs)
        if kwargs.get("swap"):
            self.dataset_path = Path(new.root)  # data_path follows the storage the buffer reads
        return new
