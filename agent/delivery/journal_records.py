"""Journal record framing: magic, length, CRC32, JSON payload; and a scan that survives damage.

A frame is ``MAGIC (2 bytes) | length (u32 LE) | crc32 (u32 LE) | payload``. The
CRC covers the length bytes and the payload, so a flipped length is caught as
surely as a flipped payload byte. Payloads are ASCII JSON (``ensure_ascii``),
and both magic bytes have the high bit set, so the magic never occurs inside a
payload: after damage the scan re-synchronises on the next magic whose frame
checks out, and keeps every intact record after the damaged stretch.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

MAGIC = b"\xba\xbe"
_HEADER = struct.Struct("<2sII")
HEADER_SIZE = _HEADER.size
_LENGTH = struct.Struct("<I")
# Far above any real record (an event is ~300 bytes, a dead letter ~1 KiB); a
# larger length is damage, not a record.
MAX_PAYLOAD = 1 << 20
# Used to estimate how many records a damaged stretch held when no intact
# record in the file gives a better average.
TYPICAL_RECORD = 320

KIND_META = "meta"
KIND_EVENT = "event"
KIND_ACK = "ack"
KIND_DEAD = "dead"
KIND_REQUEUE = "requeue"
KIND_DROP = "drop"
KIND_LOST = "lost"

# Records that define a live item carry the whole event with them.
DEFINING_KINDS = frozenset({KIND_EVENT, KIND_DEAD, KIND_REQUEUE})
_ID_KINDS = frozenset({KIND_ACK, KIND_DROP})
_EVENT_FIELDS = ("event_id", "route", "product_id", "name", "quantity", "confidence",
                 "detected_at")


def encode(payload: dict[str, Any]) -> bytes:
    """One framed record."""
    body = json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    if len(body) > MAX_PAYLOAD:
        raise ValueError(f"journal record of {len(body)} bytes exceeds {MAX_PAYLOAD}")
    length = _LENGTH.pack(len(body))
    crc = zlib.crc32(body, zlib.crc32(length))
    return MAGIC + length + _LENGTH.pack(crc) + body


def valid_payload(payload: Any) -> bool:
    """Whether a CRC-correct payload is also a record this version understands."""
    if not isinstance(payload, dict):
        return False
    kind = payload.get("k")
    if kind in DEFINING_KINDS:
        event = payload.get("e")
        return (isinstance(payload.get("id"), str) and isinstance(payload.get("r"), str)
                and type(payload.get("seq")) is int
                and isinstance(payload.get("at"), (int, float))
                and isinstance(event, dict) and all(k in event for k in _EVENT_FIELDS)
                and event["event_id"] == payload["id"])
    if kind in _ID_KINDS:
        return isinstance(payload.get("id"), str)
    if kind == KIND_META:
        return type(payload.get("next_seq")) is int
    if kind == KIND_LOST:
        return type(payload.get("n")) is int
    return False


def decode_at(data: bytes | memoryview, pos: int) -> tuple[dict[str, Any], int] | None:
    """The record starting at ``pos`` and the offset after it, or None when it is not intact."""
    end_header = pos + HEADER_SIZE
    if end_header > len(data):
        return None
    magic, length, crc = _HEADER.unpack_from(data, pos)
    if magic != MAGIC or length > MAX_PAYLOAD or end_header + length > len(data):
        return None
    body = bytes(data[end_header:end_header + length])
    if zlib.crc32(body, zlib.crc32(_LENGTH.pack(length))) != crc:
        return None
    try:
        payload = json.loads(body)
    except ValueError:  # includes UnicodeDecodeError
        return None
    if not valid_payload(payload):
        return None
    return payload, end_header + length


@dataclass(frozen=True)
class Record:
    offset: int
    size: int
    payload: dict[str, Any]


@dataclass(frozen=True)
class Damage:
    start: int
    end: int
    records: int  # estimated records the stretch held (at least 1)


@dataclass
class Scan:
    length: int
    records: list[Record] = field(default_factory=list)
    damage: list[Damage] = field(default_factory=list)

    @property
    def torn_tail_only(self) -> bool:
        """One damaged stretch running to the end of the file: an interrupted last write."""
        return len(self.damage) == 1 and self.damage[0].end == self.length

    @property
    def lost_records(self) -> int:
        return sum(d.records for d in self.damage)


def scan(data: bytes) -> Scan:
    """Every intact record in ``data`` in order, and the damaged stretches between them."""
    result = Scan(len(data))
    view = memoryview(data)
    pos = 0
    total = len(data)
    damaged: list[tuple[int, int]] = []
    while pos < total:
        found = decode_at(view, pos)
        if found is not None:
            payload, end = found
            result.records.append(Record(pos, end - pos, payload))
            pos = end
            continue
        resume = _next_intact(view, data, pos + 1)
        damaged.append((pos, resume))
        pos = resume
    if damaged:
        good = result.records
        average = (sum(r.size for r in good) / len(good) if len(good) >= 4
                   else TYPICAL_RECORD)
        for start, end in damaged:
            result.damage.append(Damage(start, end, _estimate(data, start, end, average)))
    return result


def _estimate(data: bytes, start: int, end: int, average: float) -> int:
    """How many records a damaged stretch held: exact when its first header survived."""
    if data.startswith(MAGIC, start) and start + HEADER_SIZE <= end:
        _, length, _ = _HEADER.unpack_from(data, start)
        if length <= MAX_PAYLOAD and start + HEADER_SIZE + length >= end:
            return 1  # one record, cut short or corrupted inside
    return max(1, data.count(MAGIC, start, end), round((end - start) / average))


def _next_intact(view: memoryview, data: bytes, pos: int) -> int:
    while True:
        candidate = data.find(MAGIC, pos)
        if candidate < 0:
            return len(data)
        if decode_at(view, candidate) is not None:
            return candidate
        pos = candidate + 1
