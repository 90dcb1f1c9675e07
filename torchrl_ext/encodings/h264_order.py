"""Display order and reference flags of the pictures of one H.264 GOP, read from packet headers.

A video chunk (:mod:`.video_codec`) holds its packets in decoding order. With
B-frames that is not display order, and some pictures are *non-reference*
(``nal_ref_idc == 0``): no other picture is predicted from them, so a read
that needs only frames ``[first, stop)`` of the chunk can leave such pictures
outside the range undecoded, and stop sending packets after the last one a
needed frame depends on. Both need each picture's display position, which is
the rank of its picture order count (H.264 section 8.2.1). This module reads
just enough of the sequence parameter set and of each first slice header
(sections 7.3.2.1 and 7.3.3) to compute it, for frame (not field) coding with
``pic_order_cnt_type`` 0 or 2.

:func:`gop_order` returns None whenever the chunk is anything else, or its
counts do not form the regular progression an encoder writes for one GOP
(``0, d, 2d, ...`` from each IDR picture on, as after a memory-management
reset they would not); the caller then decodes every packet. Decoded frames are identical either way: a
skipped picture is one no kept picture refers to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["GopOrder", "gop_order", "has_non_reference", "nal_units"]

_SLICE, _IDR, _SPS, _PPS = 1, 5, 7, 8
_HIGH_PROFILES = (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135)  # carry chroma_format_idc


@dataclass(frozen=True)
class GopOrder:
    """Per packet, in decoding order: its picture's display position and whether it is a reference."""

    display: tuple[int, ...]
    reference: tuple[bool, ...]

    def needed(self, first: int, stop: int) -> list[int]:
        """Packets to decode for frames ``[first, stop)``: references up to the last needed picture, and those frames."""
        inside = [i for i, d in enumerate(self.display) if first <= d < stop]
        if not inside:
            return []
        return [i for i in range(inside[-1] + 1) if self.reference[i] or first <= self.display[i] < stop]


class _Bits:
    """MSB-first reader of an RBSP (emulation prevention bytes removed)."""

    def __init__(self, data: bytes) -> None:
        self.value = int.from_bytes(data, "big")
        self.size = 8 * len(data)
        self.pos = 0

    def u(self, n: int) -> int:
        self.pos += n
        if self.pos > self.size:
            raise ValueError("header ends early")
        return (self.value >> (self.size - self.pos)) & ((1 << n) - 1)

    def ue(self) -> int:
        left = self.size - self.pos
        rest = self.value & ((1 << left) - 1)
        zeros = left - rest.bit_length()
        if rest == 0 or zeros > 31:
            raise ValueError("bad Exp-Golomb code")
        self.pos += zeros
        return self.u(zeros + 1) - 1

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def _rbsp(nal: bytes, limit: int | None = None) -> bytes:
    data = nal[1:limit] if limit else nal[1:]
    return data.replace(b"\x00\x00\x03", b"\x00\x00")


def nal_units(packet: bytes) -> list[bytes]:
    """The NAL units of an Annex B packet (start codes dropped)."""
    units, pos = [], packet.find(b"\x00\x00\x01")
    while pos >= 0:
        start = pos + 3
        pos = packet.find(b"\x00\x00\x01", start)
        end = len(packet) if pos < 0 else pos
        while end > start and packet[end - 1] == 0:  # trailing zeros belong to the next 4-byte start code
            end -= 1
        if end > start:
            units.append(packet[start:end])
    return units


def has_non_reference(packets: Sequence[bytes]) -> bool:
    """True when some packet's pictures are all non-reference slices (cheap: NAL headers only)."""
    for packet in packets:
        kinds = [(u[0] >> 5 & 3, u[0] & 31) for u in nal_units(bytes(packet))]
        slices = [ref for ref, kind in kinds if kind in (_SLICE, _IDR)]
        if slices and not any(slices):
            return True
    return False


@dataclass(frozen=True)
class _Sps:
    separate_planes: bool
    log2_frame_num: int
    poc_type: int
    log2_poc_lsb: int
    frame_mbs_only: bool


def _parse_sps(nal: bytes) -> tuple[int, _Sps | None]:
    b = _Bits(_rbsp(nal))
    profile = b.u(8)
    b.u(16)  # constraint flags, level
    sps_id = b.ue()
    separate = False
    if profile in _HIGH_PROFILES:
        chroma = b.ue()
        if chroma == 3:
            separate = bool(b.u(1))
        b.ue(), b.ue(), b.u(1)  # bit depths, qpprime_y_zero_transform_bypass
        if b.u(1):  # seq_scaling_matrix_present
            for i in range(12 if chroma == 3 else 8):
                if b.u(1):
                    last = nxt = 8
                    for _ in range(16 if i < 6 else 64):
                        if nxt:
                            nxt = (last + b.se() + 256) % 256
                        last = nxt or last
    log2_frame_num = b.ue() + 4
    poc_type = b.ue()
    if poc_type not in (0, 2):
        return sps_id, None
    log2_poc_lsb = b.ue() + 4 if poc_type == 0 else 0
    b.ue(), b.u(1), b.ue(), b.ue()  # max_num_ref_frames, gaps, width and height in macroblocks
    return sps_id, _Sps(separate, log2_frame_num, poc_type, log2_poc_lsb, bool(b.u(1)))


def gop_order(packets: Sequence[bytes]) -> GopOrder | None:
    """Display positions and reference flags of a GOP's packets (one picture each), or None (see the module)."""
    sps: dict[int, _Sps | None] = {}
    pps: dict[int, int] = {}
    pocs, refs, periods = [], [], []  # an IDR starts a period: its pictures display after all earlier ones
    prev_msb = prev_lsb = 0
    try:
        for packet in packets:
            header = None
            ref = False
            for nal in nal_units(bytes(packet)):
                kind = nal[0] & 31
                if kind == _SPS:
                    sid, parsed = _parse_sps(nal)
                    sps[sid] = parsed
                elif kind == _PPS:
                    b = _Bits(_rbsp(nal, 16))
                    pid = b.ue()
                    pps[pid] = b.ue()
                elif kind in (_SLICE, _IDR):
                    ref = ref or bool(nal[0] >> 5 & 3)
                    if header is None:
                        header = (kind, nal)
            if header is None:
                return None
            kind, nal = header
            b = _Bits(_rbsp(nal, 24))
            if b.ue() != 0:  # first_mb_in_slice: the packet must start with its picture's first slice
                return None
            b.ue()  # slice_type
            s = sps.get(pps.get(b.ue(), -1))
            if s is None or not s.frame_mbs_only:
                return None
            if s.separate_planes:
                b.u(2)
            b.u(s.log2_frame_num)
            if kind == _IDR:
                prev_msb = prev_lsb = 0
                periods.append(len(pocs))
                b.ue()  # idr_pic_id
            if not periods:
                return None
            if s.poc_type == 2:
                poc = len(pocs) - periods[-1]  # display order is decoding order
            else:
                lsb, half = b.u(s.log2_poc_lsb), 1 << (s.log2_poc_lsb - 1)
                msb = prev_msb
                if lsb < prev_lsb and prev_lsb - lsb >= half:
                    msb += 2 * half
                elif lsb > prev_lsb and lsb - prev_lsb > half:
                    msb -= 2 * half
                poc = msb + lsb
                if ref:
                    prev_msb, prev_lsb = msb, lsb
            pocs.append(poc)
            refs.append(ref)
    except (ValueError, IndexError):
        return None
    if not pocs:
        return None
    display: list[int] = []
    for a, b in zip(periods, [*periods[1:], len(pocs)]):
        ordered = sorted(pocs[a:b])
        step = ordered[1] if len(ordered) > 1 else 1
        if step < 1 or any(p != k * step for k, p in enumerate(ordered)):
            return None
        display += [a + p // step for p in pocs[a:b]]
    return GopOrder(tuple(display), tuple(refs))
