"""Event log files (``events/log-<NNNNNN>.npz``): the raw events of the episodes of one commit.

Each file is an uncompressed ``.npz`` (no pickles) with these arrays, one
entry per event except ``names``:

``names``    str      the file's name vocabulary
``name_id``  int32    index into ``names``
``episode``  int64    episode id
``step``     int64    step inside the episode
``row``      int64    global row of the step
``value``    float64  the event's value

A log is written once, atomically, and listed in the manifest after it is on
disk; :func:`filter_event_log` rewrites a copy keeping a subset of events.
Readers given the dataset ``root`` open a log through
:func:`~torchrl_ext.format.files.open_inside` (inside the root, a regular file);
without one, it must still be a regular file.
"""

from __future__ import annotations

import io
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import FormatError
from .files import atomic_write_bytes, open_inside, open_regular

__all__ = [
    "EVENT_FIELDS", "event_log_name", "write_event_log", "read_event_log", "filter_event_log",
    "check_event_log",
]

EVENT_FIELDS: tuple[tuple[str, type], ...] = (
    ("name_id", np.int32), ("episode", np.int64), ("step", np.int64),
    ("row", np.int64), ("value", np.float64),
)


def event_log_name(shard_id: int) -> str:
    """Relative path of the event log written with shard ``shard_id``."""
    return f"events/log-{shard_id:06d}.npz"


def _write(path: Path, arrays: dict[str, np.ndarray]) -> str:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    return f"crc32:{zlib.crc32(data):08x}"


def _open(path: Path, root: str | os.PathLike | None):
    return open_regular(path) if root is None else open_inside(root, path)


def check_event_log(path: str | os.PathLike, expected: str, *, root: str | os.PathLike | None = None) -> None:
    """``FormatError`` unless the file's crc32 is the one the manifest records.

    ``root``: the dataset directory the file must resolve inside.
    """
    path = Path(path)
    try:
        with _open(path, root) as f:
            found = f"crc32:{zlib.crc32(f.read()):08x}"
    except FileNotFoundError:
        raise FormatError(f"{path}: event log listed in the manifest is missing; restore it") from None
    if found != expected:
        raise FormatError(
            f"{path}: checksum {found} does not match the manifest's {expected}; the event log is "
            "corrupt, restore it from a copy"
        )


def write_event_log(path: str | os.PathLike, events: Sequence[tuple[int, int, int, str, float]]) -> str:
    """Writes ``(episode, step, row, name, value)`` events into one log file; returns its checksum."""
    names = sorted({ev[3] for ev in events})
    lookup = {n: i for i, n in enumerate(names)}
    return _write(Path(path), {
        "names": np.asarray(names, dtype=str),
        "name_id": np.asarray([lookup[ev[3]] for ev in events], dtype=np.int32),
        "episode": np.asarray([ev[0] for ev in events], dtype=np.int64),
        "step": np.asarray([ev[1] for ev in events], dtype=np.int64),
        "row": np.asarray([ev[2] for ev in events], dtype=np.int64),
        "value": np.asarray([ev[4] for ev in events], dtype=np.float64),
    })


def read_event_log(path: str | os.PathLike, *, root: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """Reads one log file; ``FormatError`` names the file when it is unreadable or inconsistent.

    ``root``: the dataset directory the file must resolve inside (every reader
    in the library passes it).
    """
    path = Path(path)
    try:
        with _open(path, root) as fh, np.load(fh, allow_pickle=False) as z:
            data = {k: z[k] for k in ("names", *(f for f, _ in EVENT_FIELDS))}
    except FormatError:  # outside the root, or not a regular file: said as it is
        raise
    except (OSError, KeyError, ValueError, EOFError) as err:
        raise FormatError(
            f"{path}: event log is unreadable ({err}); expected an npz with names, name_id, "
            "episode, step, row, value; restore it or rewrite the dataset"
        ) from err
    n = data["name_id"].shape[0]
    for name, dtype in EVENT_FIELDS:
        a = data[name]
        if a.shape != (n,) or not np.can_cast(a.dtype, dtype, "same_kind"):
            raise FormatError(
                f"{path}: event field {name!r} is {a.dtype} {list(a.shape)}, expected "
                f"{np.dtype(dtype).name} [{n}]; restore it or rewrite the dataset"
            )
        data[name] = a.astype(dtype, copy=False)
    if data["names"].ndim != 1 or (n and not 0 <= data["name_id"].min() <= data["name_id"].max()
                                   < data["names"].shape[0]):
        raise FormatError(f"{path}: event name ids fall outside the file's {data['names'].shape} names")
    return data


def filter_event_log(src: str | os.PathLike, dst: str | os.PathLike, max_row: int, *,
                     root: str | os.PathLike | None = None) -> str | None:
    """Copies a log keeping the events of rows below ``max_row``; returns the copy's checksum.

    Returns None (nothing written) when no event is left. ``root``: the
    dataset directory ``src`` must resolve inside.
    """
    data = read_event_log(src, root=root)
    keep = data["row"] < max_row
    if not keep.any():
        return None
    for name, _ in EVENT_FIELDS:
        data[name] = data[name][keep]
    return _write(Path(dst), data)
