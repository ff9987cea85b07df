"""Record framing: round trips, every way a frame is refused, and the damage-tolerant scan."""

from __future__ import annotations

import json
import struct
import zlib

import pytest

from agent.delivery import journal_records as rec


def _event_record(n: int) -> dict:
    return {"k": "event", "id": f"id-{n}", "r": "basket", "seq": n, "at": 1.5,
            "e": {"event_id": f"id-{n}", "route": "basket", "product_id": "P1",
                  "name": "Caf\u00e9 \u00ba\u00be", "quantity": 1, "confidence": 0.9,
                  "detected_at": "2026-12-04T10:00:00.000Z"}}


def _frame_raw(body: bytes, *, length: int | None = None, crc: int | None = None,
               magic: bytes = rec.MAGIC) -> bytes:
    length_bytes = struct.pack("<I", len(body) if length is None else length)
    if crc is None:
        crc = zlib.crc32(body, zlib.crc32(length_bytes))
    return magic + length_bytes + struct.pack("<I", crc) + body


def test_round_trip_and_layout() -> None:
    payload = _event_record(7)
    frame = rec.encode(payload)
    assert frame[:2] == rec.MAGIC
    assert struct.unpack("<I", frame[2:6])[0] == len(frame) - rec.HEADER_SIZE
    assert rec.decode_at(frame, 0) == (payload, len(frame))
    assert rec.decode_at(b"junk" + frame, 4) == (payload, 4 + len(frame))


def test_payloads_are_ascii_so_the_magic_never_appears_inside() -> None:
    frame = rec.encode(_event_record(1))
    assert frame[rec.HEADER_SIZE:].isascii()
    assert frame.count(rec.MAGIC) == 1


@pytest.mark.parametrize("mangle", [
    lambda f: f[:-1],  # torn
    lambda f: f[:5],  # header cut
    lambda f: b"\x00\x00" + f[2:],  # magic gone
    lambda f: f[:10] + bytes([f[10] ^ 0x01]) + f[11:],  # payload bit flip
    lambda f: f[:2] + bytes([f[2] ^ 0x01]) + f[3:],  # length bit flip
    lambda f: f[:6] + bytes([f[6] ^ 0x80]) + f[7:],  # crc bit flip
])
def test_damaged_frames_are_refused(mangle) -> None:
    assert rec.decode_at(mangle(rec.encode(_event_record(1))), 0) is None


def test_oversized_length_is_refused_without_reading_it() -> None:
    assert rec.decode_at(_frame_raw(b"{}", length=rec.MAX_PAYLOAD + 1), 0) is None


def test_correct_crc_but_not_json_or_not_a_record_is_refused() -> None:
    assert rec.decode_at(_frame_raw(b"\xff\xfe not json"), 0) is None
    assert rec.decode_at(_frame_raw(b"[1, 2]"), 0) is None
    assert rec.decode_at(_frame_raw(json.dumps({"k": "future-kind"}).encode()), 0) is None


@pytest.mark.parametrize("payload,ok", [
    ({"k": "ack", "id": "x"}, True),
    ({"k": "ack"}, False),
    ({"k": "drop", "id": 3}, False),
    ({"k": "meta", "next_seq": 4}, True),
    ({"k": "meta", "next_seq": "4"}, False),
    ({"k": "lost", "n": 2}, True),
    ({"k": "lost", "n": 2.5}, False),
    ({"k": "event", "id": "id-1", "r": "basket", "seq": True, "at": 1.0, "e": {}}, False),
])
def test_valid_payload(payload, ok) -> None:
    assert rec.valid_payload(payload) is ok


def test_defining_records_need_a_whole_matching_event() -> None:
    good = _event_record(1)
    assert rec.valid_payload(good)
    missing = dict(good, e={k: v for k, v in good["e"].items() if k != "quantity"})
    assert not rec.valid_payload(missing)
    other = dict(good, e=dict(good["e"], event_id="someone-else"))
    assert not rec.valid_payload(other)


def test_too_large_a_record_is_not_written() -> None:
    with pytest.raises(ValueError):
        rec.encode({"k": "ack", "id": "x" * (rec.MAX_PAYLOAD + 1)})


def test_scan_of_a_clean_file() -> None:
    frames = [rec.encode(_event_record(n)) for n in range(5)]
    result = rec.scan(b"".join(frames))
    assert [r.payload["seq"] for r in result.records] == list(range(5))
    assert result.damage == [] and result.lost_records == 0
    assert result.records[2].offset == sum(map(len, frames[:2]))


def test_scan_of_empty_and_pure_garbage() -> None:
    assert rec.scan(b"").records == [] and rec.scan(b"").damage == []
    garbage = rec.scan(b"\x00" * 4096)
    assert garbage.records == [] and garbage.lost_records >= 1 and garbage.torn_tail_only


def test_scan_resynchronises_after_a_flipped_byte() -> None:
    frames = [rec.encode(_event_record(n)) for n in range(6)]
    data = bytearray(b"".join(frames))
    data[sum(map(len, frames[:2])) + 20] ^= 0xFF  # inside record 2
    result = rec.scan(bytes(data))
    assert [r.payload["seq"] for r in result.records] == [0, 1, 3, 4, 5]
    assert len(result.damage) == 1 and result.damage[0].records == 1
    assert not result.torn_tail_only


def test_scan_of_a_torn_tail() -> None:
    frames = [rec.encode(_event_record(n)) for n in range(3)]
    data = b"".join(frames)[:-7]
    result = rec.scan(data)
    assert [r.payload["seq"] for r in result.records] == [0, 1]
    assert result.torn_tail_only and result.lost_records == 1


def test_scan_estimates_records_lost_in_a_zeroed_stretch() -> None:
    frames = [rec.encode(_event_record(n)) for n in range(40)]
    data = bytearray(b"".join(frames))
    size = len(frames[0])
    data[5 * size:5 * size + 10 * size] = bytes(10 * size)
    result = rec.scan(bytes(data))
    assert len(result.records) == 30
    assert 9 <= result.lost_records <= 11
