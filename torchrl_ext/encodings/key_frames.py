"""Key packets of a video chunk: where a fresh decoder may start, and what it needs there first.

A chunk (:mod:`.video_codec`) may hold several groups of pictures, as
LeRobot's videos (a key frame every 2 frames) are stored. With one packet per
frame, frame ``first`` can be decoded from the last key packet ``k <= first``
instead of from the chunk's start: the decoder then yields frames ``k, k + 1,
...``, one per packet, and references nothing before ``k``.

- **h264** (ITU-T H.264, section 7.4.1.2): a key packet's pictures are IDR
  slices (``nal_unit_type`` 5). An IDR picture is output after every earlier
  one and no later picture refers past it. A fresh decoder needs a sequence
  and a picture parameter set (types 7 and 8): when the packet lacks either,
  those NAL units of the chunk's first packet go before its own (after an
  access unit delimiter, type 9, which comes first).
- **AV1** (AV1 bitstream specification, sections 5.3 and 5.9): a packet is a
  temporal unit of OBUs that shows one frame. A key packet holds one frame
  header (in an ``OBU_FRAME``, type 6, or an ``OBU_FRAME_HEADER``, type 3)
  whose first bits are ``show_existing_frame = 0``, ``frame_type = KEY_FRAME``
  (0) and ``show_frame = 1``; a shown key frame refreshes every reference.
  Those bits come first only without ``reduced_still_picture_header`` (the
  fifth bit of the sequence header), and streams with OBU extensions (layers) are left
  alone. When the packet lacks a sequence header OBU (type 1), the chunk's
  first packet's one goes before its frame (after a temporal delimiter,
  type 2, which comes first).

:func:`key_start` returns None whenever the chunk is anything else; the
caller then decodes from the chunk's start, as it does for ``first == 0``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from .h264_order import nal_units

__all__ = ["key_start", "obus"]

_IDR, _SPS, _PPS, _AUD = 5, 7, 8, 9
_VCL = frozenset(range(1, 6))  # coded slice NAL unit types
_START = b"\x00\x00\x00\x01"
_HEAD = 4096  # bytes searched for a packet's first slice before the whole packet (SEI may come first)
_OBU_SEQUENCE_HEADER, _OBU_TEMPORAL_DELIMITER, _OBU_FRAME_HEADER, _OBU_FRAME = 1, 2, 3, 6


def key_start(codec: str, packets: Sequence[bytes | memoryview], first: int) -> tuple[int, bytes] | None:
    """The last key packet ``k`` with ``0 < k <= first`` and its bytes as a fresh decoder takes them, or None.

    Args:
        codec: ``"h264"`` or ``"av1"`` (anything else gives None).
        packets: the chunk's packets in decoding order, one per frame.
        first: the first frame to decode.

    Returns:
        ``(k, packet)``: decoding ``packet`` and then ``packets[k + 1:]`` yields frames ``k, k + 1, ...``;
        None when the chunk's start is the only start known (see the module).

    >>> key_start("vp9", [b"", b""], 1) is None
    True
    """
    if codec == "h264":
        is_key, headers = _h264_key, _h264_headers
    elif codec == "av1":
        is_key, headers = _av1_key, _av1_headers
    else:
        return None
    for k in range(min(first, len(packets) - 1), 0, -1):
        if is_key(packets[k]):
            prepared = headers(packets[0], bytes(packets[k]))
            return None if prepared is None else (k, prepared)
    return None


# -- h264 -------------------------------------------------------------------------------------
def _h264_key(packet: bytes | memoryview) -> bool:
    """Whether the packet's picture is an IDR picture: the type of its first slice (all slices of a picture
    share it), found in the packet's first bytes when it is there."""
    for data in (bytes(packet[:_HEAD]), bytes(packet)):
        pos = data.find(b"\x00\x00\x01")
        while 0 <= pos < len(data) - 3:
            kind = data[pos + 3] & 31
            if kind in _VCL:
                return kind == _IDR
            pos = data.find(b"\x00\x00\x01", pos + 3)
        if len(data) == len(packet):
            break
    return False


def _h264_headers(chunk_first: bytes | memoryview, packet: bytes) -> bytes | None:
    units = nal_units(packet)
    if {_SPS, _PPS} <= {nal[0] & 31 for nal in units if nal}:
        return packet
    params = [nal for nal in nal_units(bytes(chunk_first)) if nal and nal[0] & 31 in (_SPS, _PPS)]
    if {nal[0] & 31 for nal in params} != {_SPS, _PPS}:
        return None
    at = 0
    if units and units[0] and units[0][0] & 31 == _AUD:
        at = packet.find(units[0]) + len(units[0])
    return packet[:at] + b"".join(_START + nal for nal in params) + packet[at:]


# -- AV1 --------------------------------------------------------------------------------------
def _each_obu(data: bytes | memoryview) -> Iterator[tuple[int, int, int, int] | None]:
    """``(start, payload start, end, obu_type)`` of each OBU of a temporal unit in turn, then None if one is
    malformed or carries an extension (layers).

    Section 5.3.1: a header byte (forbidden bit, 4-bit ``obu_type``, ``obu_extension_flag``,
    ``obu_has_size_field``, a reserved bit), then ``obu_size`` as leb128 (section 4.10.5: 7 bits a byte,
    least significant first, at most 8 bytes) when the size field is present, else the OBU runs to the end.
    """
    i, n = 0, len(data)
    while i < n:
        h, j = data[i], i + 1
        if h & 0x84:  # forbidden bit, obu_extension_flag
            yield None
            return
        end = n
        if h & 0x02:
            size = shift = 0
            while True:
                if j >= n or shift == 56:
                    yield None
                    return
                byte = data[j]
                j += 1
                size |= (byte & 0x7F) << shift
                shift += 7
                if byte < 0x80:
                    break
            end = j + size
            if end > n:
                yield None
                return
        yield i, j, end, (h >> 3) & 15
        i = end


def obus(data: bytes | memoryview) -> list[tuple[int, int, int, int]] | None:
    """``(start, payload start, end, obu_type)`` of every OBU of an AV1 temporal unit (:func:`_each_obu`), or
    None when one is malformed or carries an extension."""
    out = []
    for obu in _each_obu(data):
        if obu is None:
            return None
        out.append(obu)
    return out


def _av1_key(packet: bytes | memoryview) -> bool:
    frames, headers = 0, []
    for obu in _each_obu(packet):
        if obu is None:
            return False
        _, a, b, kind = obu
        if kind in (_OBU_FRAME, _OBU_FRAME_HEADER):
            # show_existing_frame (1 bit) = 0, frame_type (2 bits) = KEY_FRAME, show_frame (1 bit) = 1
            if frames or a >= b or packet[a] & 0xF0 != 0x10:
                return False
            frames += 1
        elif kind == _OBU_SEQUENCE_HEADER:
            headers.append(packet[a:b])
    return frames == 1 and all(_full_headers(h) for h in headers)


def _full_headers(sequence_header: bytes | memoryview) -> bool:
    """Whether frame headers start with ``show_existing_frame`` (seq_profile: 3 bits, still_picture: 1,
    reduced_still_picture_header: 1 = 0)."""
    return bool(sequence_header) and not sequence_header[0] & 0x08


def _av1_headers(chunk_first: bytes | memoryview, packet: bytes) -> bytes | None:
    units = obus(packet)
    if units is None:
        return None
    if any(kind == _OBU_SEQUENCE_HEADER for *_, kind in units):
        return packet
    chunk_first = bytes(chunk_first)
    found = [(s, a, b) for s, a, b, kind in obus(chunk_first) or () if kind == _OBU_SEQUENCE_HEADER]
    if not found:
        return None
    s, a, b = found[0]
    if not chunk_first[s] & 0x02 or not _full_headers(chunk_first[a:b]):  # without a size it cannot go first
        return None
    at = units[0][2] if units and units[0][3] == _OBU_TEMPORAL_DELIMITER else 0
    return packet[:at] + chunk_first[s:b] + packet[at:]
