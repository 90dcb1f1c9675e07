"""Which checkpoint file each converted row was read from, and the ``metadata`` TorchRL gives that file's rows.

``torchrl.data.datasets.AtariDQNExperienceReplay`` (torchrl 0.14,
``_AtariStorage._proc_td``) keeps each checkpoint file of a run as one split
and gives every row it returns, under ``metadata``, the split's files other
than the buffer columns: ``{"invalid_range": int64 [stack_size + 1],
"add_count": int64 [], "dataset_id": "<game>/<run>"}``, the values as the
files store them (batch_rl's final file stores the cursor as its add count).
Rows of one file share a ``NonTensorData``; a batch drawn from several files
holds a ``NonTensorStack`` of one dict per row.

The conversion reads each transition once, from the first checkpoint (in
time order) that holds it: checkpoint ``k`` supplies transitions ``first ..
stop - 1`` of its :class:`~.timeline.Span`, with ``first = max(lo,
previous stop)``. It keeps one record per checkpoint read in
``atari_dqn.json``, under :data:`RECORDS_KEY`::

    {"index": 3, "first": 2999997, "add_count": 3999999, "invalid_range": [3999998, 3999999, 0, 1, 2]}

(``invalid_range`` holds row numbers of the file, as stored). A row's
transition number is its episode's ``first_index`` (episode table) plus its
step, so its file is the last record whose ``first`` is not above it: two
``searchsorted`` per batch, one small object per file touched.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict

from ...format import FormatError
from ...format.files import loads_json
from .logs import ReplayLogs
from .records import read_invalid_range
from .timeline import Span

__all__ = ["RECORDS_KEY", "CheckpointFiles", "checkpoint_records", "conversion_record"]

logger = logging.getLogger(__name__)

RECORDS_KEY = "checkpoint_files"
_FIX = "convert the run again (AtariDQNExperienceReplay(..., download='force'))"


def checkpoint_records(logs: ReplayLogs, spans: Sequence[Span]) -> list[dict[str, Any]]:
    """One record per checkpoint read, in time order (see the module doc); reads each small ``invalid_range`` file."""
    out, stop = [], 0
    for span in spans:
        rows = read_invalid_range(logs, span.index, span.capacity)
        out.append({"index": span.index, "first": max(span.lo, stop), "add_count": span.stored,
                    "invalid_range": [int(v) for v in rows]})
        stop = span.stop
    return out


def conversion_record(path: str | os.PathLike) -> dict[str, Any]:
    """``atari_dqn.json`` without its checkpoint records: what decides whether a conversion is finished."""
    record = loads_json(Path(path).read_text(encoding="utf-8"))
    if isinstance(record, dict):
        record.pop(RECORDS_KEY, None)
    return record


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _checked(records: Any, where: str) -> list[dict[str, Any]]:
    ok = isinstance(records, list) and bool(records) and all(
        isinstance(r, dict) and _int(r.get("first")) and _int(r.get("add_count"))
        and isinstance(r.get("invalid_range"), list) and all(map(_int, r["invalid_range"])) for r in records)
    if ok:
        firsts = [r["first"] for r in records]
        ok = all(a < b for a, b in pairwise(firsts))
    if not ok:
        raise FormatError(f"{where}: `{RECORDS_KEY}` must be a list of records with increasing `first` and "
                          f"int `add_count` / `invalid_range`, found {str(records)[:200]}; {_FIX}")
    return records


class CheckpointFiles:
    """The checkpoint file of every row of one converted run, and each file's ``metadata`` dict.

    Args:
        dataset_id: ``"<game>/<run>"``.
        ep_first: first row of each episode (the storage's ``episode_bounds[0]``).
        first_index: transition number of each episode's step 0 (episode table).
        records: :func:`checkpoint_records` (None: a conversion that kept none;
            the metadata then holds ``dataset_id`` alone).
    """

    def __init__(self, dataset_id: str, ep_first: np.ndarray, first_index: np.ndarray,
                 records: list[dict[str, Any]] | None) -> None:
        self.ep_first = np.asarray(ep_first, dtype=np.int64)
        self.shift = np.asarray(first_index, dtype=np.int64) - self.ep_first  # row -> transition number
        if records is None:
            self.starts = np.zeros(1, dtype=np.int64)
            self.metadata = [{"dataset_id": dataset_id}]
        else:
            self.starts = np.array([r["first"] for r in records], dtype=np.int64)
            self.metadata = [{"invalid_range": torch.tensor(r["invalid_range"], dtype=torch.int64),
                              "add_count": torch.tensor(r["add_count"], dtype=torch.int64),
                              "dataset_id": dataset_id} for r in records]

    @classmethod
    def of_storage(cls, storage: Any, done_file: str | os.PathLike) -> CheckpointFiles:
        """The files of the run a storage reads, from its ``done_file`` (``atari_dqn.json``) and episode table."""
        source = storage.manifest.source or {}
        dataset_id = f"{source.get('game', '')}/{source.get('run', '')}"
        try:
            record = loads_json(Path(done_file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise FormatError(f"{done_file}: cannot read the conversion record ({err}); {_FIX}") from err
        records = record.get(RECORDS_KEY) if isinstance(record, dict) else None
        if records is None:
            logger.warning("%s: converted before checkpoint records were kept; layout='torchrl' metadata holds "
                           "dataset_id only; %s for add_count and invalid_range", storage.root, _FIX)
        else:
            records = _checked(records, str(done_file))
        table = storage.episode_table()
        try:
            first_index = [v for (v,) in table.values(["first_index"], num_episodes=storage.num_episodes)]
        finally:
            table.close()
        return cls(dataset_id, storage.episode_bounds[0], np.asarray(first_index, dtype=np.int64), records)

    def files_of(self, rows: np.ndarray) -> np.ndarray:
        """Index (into :attr:`metadata`) of the file each row was read from."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        episode = np.searchsorted(self.ep_first, rows, side="right") - 1
        transition = rows + self.shift[episode]
        return np.maximum(np.searchsorted(self.starts, transition, side="right") - 1, 0)

    def attach(self, td: TensorDict, rows: np.ndarray) -> TensorDict:
        """``td`` (the rows ``rows``, in that order) with TorchRL's ``metadata`` entry."""
        if td.batch_dims != 1:
            return self.attach(td.reshape(-1), rows).reshape(td.batch_size)
        files = self.files_of(rows)
        kinds = np.unique(files)
        if kinds.size <= 1:
            td.set_non_tensor("metadata", self.metadata[int(kinds[0]) if kinds.size else 0])
            return td
        order = np.argsort(files, kind="stable")
        pieces = []
        for k in kinds.tolist():  # one object per file touched, as TorchRL concatenates its splits
            piece = TensorDict(batch_size=[int(np.count_nonzero(files == k))])
            piece.set_non_tensor("metadata", self.metadata[k])
            pieces.append(piece)
        stacked = torch.cat(pieces)[torch.from_numpy(np.argsort(order, kind="stable"))]
        td.set("metadata", stacked.get("metadata"))
        return td
