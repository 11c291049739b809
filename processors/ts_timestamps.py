"""The first presentation time of an MPEG-TS file, read in Python.

WebVTT captions line up with MPEG-TS segments through the timestamp a segment
starts at (HLS's X-TIMESTAMP-MAP). That segment is ours, but made from an
upload: rather than hand it to another C parser outside the sandbox, the few
header fields this needs are read here, bounds-checked, from the first packets.

A TS packet is 188 bytes starting with 0x47; a packet that starts a PES packet
(payload_unit_start_indicator) carries the PES header, whose optional fields
hold a 33-bit PTS in 90 kHz ticks.
"""

from __future__ import annotations

from pathlib import Path

PACKET = 188
SYNC = 0x47
# Enough packets to meet the first PES packet of every stream in a segment.
SCAN_PACKETS = 4096


def first_pts(path: Path, scan_packets: int = SCAN_PACKETS) -> int | None:
    """The lowest PTS among the PES packets that start in the file's first
    `scan_packets` packets (90 kHz ticks), or None if it is not MPEG-TS."""
    try:
        with path.open("rb") as f:
            data = f.read(PACKET * scan_packets)
    except OSError:
        return None
    lowest: int | None = None
    for start in range(0, len(data) - PACKET + 1, PACKET):
        packet = data[start : start + PACKET]
        if packet[0] != SYNC:
            return None  # not a TS file (or not from its first byte)
        pts = _pes_pts(packet)
        if pts is not None and (lowest is None or pts < lowest):
            lowest = pts
    return lowest


def _pes_pts(packet: bytes) -> int | None:
    if not packet[1] & 0x40:  # payload_unit_start_indicator: no PES header here
        return None
    control = (packet[3] >> 4) & 0x3
    if not control & 0x1:  # no payload
        return None
    payload = 4
    if control & 0x2:  # an adaptation field comes first: its length, then itself
        payload += 1 + packet[4]
    pes = packet[payload:]
    # start code 00 00 01, a stream id of audio (0xC0-0xDF) or video (0xE0-0xEF),
    # 2 bytes of length, 2 bytes of flags, the header length, then the PTS.
    if len(pes) < 14 or pes[:3] != b"\x00\x00\x01" or not 0xC0 <= pes[3] <= 0xEF:
        return None
    if not pes[7] & 0x80:  # PTS_DTS_flags: no PTS
        return None
    p = pes[9:14]
    return ((p[0] >> 1) & 0x07) << 30 | p[1] << 22 | (p[2] >> 1) << 15 | p[3] << 7 | p[4] >> 1
