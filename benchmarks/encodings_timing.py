"""Timing and size accounting for ``bench_encodings.py``: paired peer/value rows, bytes per column, video peers.

``Row`` times a callable against its peer in alternation and keeps the median
ratio; ``BarePyAV`` decodes the stored packets of a window in a bare PyAV loop
(the peer of ``ColumnWindows``, which reads the same window through the column
reader); ``profile_top`` names where a call spends its time.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import statistics
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from common import timeit

from torchrl_ext import read_manifest
from torchrl_ext.encodings import ChunkedColumnReader, ChunkIndex, chunk_file_paths, column_options

@dataclass
class Row:
    """One timed row. ``make()`` / ``make_peer()`` build the timed callables when the row runs,
    so only a few storages hold file descriptors at a time."""

    label: str
    make: Callable[[], Callable[[], object]]
    peer_label: str
    make_peer: Callable[[], Callable[[], object]]
    target: float | None  # ratio ceiling; None: informational
    profile: bool = False
    ratios: list[float] = field(default_factory=list)
    values: list[tuple[float, float]] = field(default_factory=list)

    def run(self, repeats: int) -> None:
        """Alternates peer and value repeats (so load changes hit both) and keeps the median ratio."""
        fn, peer = self.make(), self.make_peer()
        n = min(iterations(fn), iterations(peer))  # equal calls keep both sides on the same window pool entries
        pairs = [(timeit(peer, n, 1), timeit(fn, n, 1)) for _ in range(repeats)]
        self.values.append((statistics.median(v for _, v in pairs), statistics.median(p for p, _ in pairs)))
        self.ratios.append(statistics.median(v / p for p, v in pairs))

    def missed(self) -> bool:
        return self.target is not None and max(self.ratios) > self.target

    def verdict(self) -> str:
        if self.target is None:
            return ""
        met = sum(x <= self.target for x in self.ratios)
        return "met" if met == len(self.ratios) else "**missed**" if not met else f"met in {met} of {len(self.ratios)} passes"


def iterations(fn: Callable[[], object], budget: float = 0.08) -> int:
    """Calls per repeat so that one repeat takes ~``budget`` seconds (after two untimed calls)."""
    fn()
    t0 = time.perf_counter()
    fn()
    return max(1, min(200, int(budget / max(time.perf_counter() - t0, 1e-6))))


def cycle(pool: list) -> Callable[[], object]:
    it = iter(range(1 << 62))
    return lambda: pool[next(it) % len(pool)]


def column_sizes(root: Path) -> dict[str, int]:
    """Apparent bytes of the observation column (shard files and dictionary; final frames apart) and of all files."""
    obs = final = total = 0
    for p in root.rglob("*"):
        if not p.is_file():
            continue
        n = p.stat().st_size
        total += n
        if p.name.split(".")[0] == "observation":
            if p.parent.name == "final":
                final += n
            elif p.parent.parent.name == "shards" or p.parent.name == "dicts":
                obs += n
    return {"obs": obs, "final": final, "total": total}


def chunk_bytes_by_game(root: Path, bounds: np.ndarray) -> np.ndarray:
    """Bytes of the observation chunks that start in each game's rows (``bounds``: cumulative frames)."""
    out = np.zeros(len(bounds) - 1)
    start = 0
    for s in read_manifest(root).shards:
        _, index = chunk_file_paths(root / s.dir, ("observation",))
        idx = ChunkIndex.from_bytes(index.read_bytes(), str(index))
        game = np.searchsorted(bounds, start + np.arange(idx.n_chunks) * idx.chunk_rows, side="right") - 1
        np.add.at(out, game, np.diff(idx.offsets))
        start += s.rows
    return out


def unpack_packets(payload: bytes) -> list[bytes]:
    """The packets of one video chunk (layout in ``torchrl_ext.encodings.video_codec``)."""
    (n,) = struct.unpack_from("<I", payload, 0)
    out, pos = [], 4 + 4 * n
    for size in struct.unpack_from(f"<{n}I", payload, 4):
        out.append(payload[pos:pos + size])
        pos += size
    return out


class BarePyAV:
    """The ceiling for video reads: one PyAV decoder fed the stored packets.

    Setup (not timed) parses every shard's index and splits every chunk into
    packets. ``read(start, n, out)`` decodes, per covered chunk, the packets from
    the chunk's key frame up to the last needed frame and converts only the
    needed frames to RGB: the least work any reader of this format must do.
    """

    def __init__(self, root: Path, key: tuple[str, ...] = ("observation",)) -> None:
        m = read_manifest(root)
        self.offsets = np.concatenate(([0], np.cumsum([s.rows for s in m.shards]))).astype(np.int64)
        self.shards = []
        for s in m.shards:
            chunks, index = chunk_file_paths(root / s.dir, key)
            idx = ChunkIndex.from_bytes(index.read_bytes(), str(index))
            data = chunks.read_bytes()
            bounds = zip(idx.offsets[:-1].tolist(), idx.offsets[1:].tolist())
            self.shards.append((idx.chunk_rows, [unpack_packets(data[a:b]) for a, b in bounds]))
        self.ctx = av.CodecContext.create("h264", "r")
        self.ctx.thread_count = 1
        self.rgb = VideoReformatter()  # kept, so swscale's context is made once, as the reader does

    def _store(self, frame: av.VideoFrame, out: np.ndarray, i: int) -> None:
        out[i] = self.rgb.reformat(frame, format="rgb24").to_ndarray()

    def read(self, start: int, n: int, out: np.ndarray) -> np.ndarray:
        """Rows ``start .. start + n - 1`` (across chunks and shards) into ``out[:n]``."""
        ctx, pos, row, end = self.ctx, 0, start, start + n
        while row < end:
            sh = int(np.searchsorted(self.offsets, row, side="right") - 1)
            cr, chunks = self.shards[sh]
            local = row - int(self.offsets[sh])
            c = local // cr
            first = local - c * cr
            stop = min(first + end - row, cr, int(self.offsets[sh + 1] - self.offsets[sh]) - c * cr)
            ctx.flush_buffers()
            got = 0
            for pkt in chunks[c][:stop]:
                for frame in ctx.decode(av.Packet(pkt)):
                    if first <= got < stop:
                        self._store(frame, out, pos + got - first)
                    got += 1
            if got < stop:
                for frame in ctx.decode(None):
                    if first <= got < stop:
                        self._store(frame, out, pos + got - first)
                    got += 1
            if got < stop:
                raise RuntimeError(f"chunk {c} of shard {sh} gave {got} frames, expected at least {stop}")
            pos += stop - first
            row += stop - first
        return out


class ColumnWindows:
    """The library's own column decoder alone: one ``ChunkedColumnReader`` per shard (no cache, one
    thread), each decoding straight into the array it returns."""

    def __init__(self, root: Path, key: tuple[str, ...] = ("observation",)) -> None:
        m = read_manifest(root)
        col = m.column(key)
        self.offsets = np.concatenate(([0], np.cumsum([s.rows for s in m.shards]))).astype(np.int64)
        self.readers = [ChunkedColumnReader(root / s.dir, key, col.dtype, col.shape, column_options(col), s.rows,
                                            threads=1) for s in m.shards]

    def read(self, start: int, n: int, out: np.ndarray | None = None) -> list[np.ndarray]:
        """Rows ``start .. start + n - 1`` as one array per shard they span (``out`` is not used)."""
        parts, row, end = [], start, start + n
        while row < end:
            sh = int(np.searchsorted(self.offsets, row, side="right") - 1)
            stop = min(end, int(self.offsets[sh + 1]))
            parts.append(self.readers[sh].read(row - int(self.offsets[sh]), stop - int(self.offsets[sh])))
            row = stop
        return parts


def profile_top(fn: Callable[[], object], calls: int, top: int = 4) -> str:
    """``fn`` under cProfile ``calls`` times: the ``top`` functions by own time, as shares of the total."""
    for _ in range(2):  # first touches of shards (decompression contexts, page tables) are not the steady state
        fn()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        fn()
    prof.disable()
    st = pstats.Stats(prof).stats
    total = sum(v[2] for v in st.values()) or 1.0
    parts = []
    for (file, line, func), v in sorted(st.items(), key=lambda kv: -kv[1][2])[:top]:
        where = func if file == "~" else f"{os.path.basename(file)}:{line} {func}"
        parts.append(f"{100 * v[2] / total:.0f}% `{where}`")
    return ", ".join(parts)


# ------------------------------------------------------------------------ run
