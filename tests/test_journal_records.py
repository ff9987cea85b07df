"""Record framing: round trips, every way a frame is refused, and the damage-tolerant scan."""

from __future__ import annotations

import struct
import zlib

import pytest

from agent.delivery import journal_records as rec


def _event_record(n: int) -> rec.Rec:
    return rec.make(rec.EVENT, id=f"id-{n}", route="basket", seq=n, at=1.5, tail={
        "e": {"event_id": f"id-{n}", "route": "basket", "product_id": "P1",
              "name": "Caf\u00e9 \u00ba\u00be", "quantity": 1, "confidence": 0.9,
              "detected_at": "2026-12-04T10:00:00.000Z"}})


def _frame_raw(body: bytes, *, length: int | None = None) -> bytes:
    covered = struct.pack("<I", len(body) if length is None else length) + body
    return rec.MAGIC + struct.pack("<I", zlib.crc32(covered)) + covered


def _head(kind: int, event_id: bytes = b"x", route: bytes = b"r") -> bytes:
    return struct.pack("<BBqdHH", kind, 0, 1, 0.0, len(event_id), len(route)) + event_id + route


def test_round_trip_and_layout() -> None:
    record = _event_record(7)
    frame = rec.encode(record)
    assert frame[:2] == rec.MAGIC
    assert struct.unpack("<I", frame[6:10])[0] == len(frame) - rec.HEADER_SIZE
    assert rec.decode_at(frame, 0) == (record, len(frame))
    assert rec.decode_at(b"junk" + frame, 4) == (record, 4 + len(frame))
    assert record.data()["e"]["name"] == "Caf\u00e9 \u00ba\u00be"


def test_non_ascii_ids_and_empty_tails_round_trip() -> None:
    ack = rec.make(rec.ACK, id="\u00e9v\u00e9nement")
    assert rec.decode_at(rec.encode(ack), 0) == (ack, len(rec.encode(ack)))
    assert ack.data() == {}


def test_the_json_tail_is_ascii() -> None:
    frame = rec.encode(_event_record(1))
    assert frame.endswith(_event_record(1).tail) and _event_record(1).tail.isascii()


@pytest.mark.parametrize("mangle", [
    lambda f: f[:-1],  # torn
    lambda f: f[:5],  # header cut
    lambda f: b"\x00\x00" + f[2:],  # magic gone
    lambda f: f[:30] + bytes([f[30] ^ 0x01]) + f[31:],  # body bit flip
    lambda f: f[:6] + bytes([f[6] ^ 0x01]) + f[7:],  # length bit flip
    lambda f: f[:2] + bytes([f[2] ^ 0x80]) + f[3:],  # crc bit flip
])
def test_damaged_frames_are_refused(mangle) -> None:
    assert rec.decode_at(mangle(rec.encode(_event_record(1))), 0) is None


def test_oversized_length_is_refused_without_reading_it() -> None:
    assert rec.decode_at(_frame_raw(b"{}", length=rec.MAX_PAYLOAD + 1), 0) is None


@pytest.mark.parametrize("body", [
    b"short",  # shorter than the fixed head
    _head(99),  # unknown kind
    _head(rec.EVENT)[:-1],  # id and route run past the body
    _head(rec.ACK, event_id=b""),  # an ack names no event
    _head(rec.EVENT, route=b""),  # an event without a route
    _head(rec.ACK, event_id=b"\xff\xfe"),  # not UTF-8
])
def test_correct_crc_but_not_a_record_is_refused(body: bytes) -> None:
    assert rec.decode_at(_frame_raw(body), 0) is None


def test_a_tail_that_is_not_an_object_is_an_error_when_read() -> None:
    record = rec.Rec(rec.EVENT, 0, 1, 0.0, "x", "r", b"[1]")
    with pytest.raises(TypeError):
        record.data()


def test_too_large_a_record_is_not_written() -> None:
    with pytest.raises(ValueError):
        rec.encode(rec.make(rec.ACK, id="x", tail={"pad": "x" * (rec.MAX_PAYLOAD + 1)}))
    with pytest.raises(ValueError):
        rec.encode(rec.make(rec.ACK, id="x" * 70_000))


def test_scan_of_a_clean_file() -> None:
    frames = [rec.encode(_event_record(n)) for n in range(5)]
    result = rec.scan(b"".join(frames))
    assert [r.seq for _, _, r in result.records] == list(range(5))
    assert result.damage == [] and result.lost_records == 0
    assert result.records[2][0] == sum(map(len, frames[:2]))


def test_scan_of_empty_zeroed_and_pure_garbage() -> None:
    assert rec.scan(b"").records == [] and rec.scan(b"").damage == []
    zeroed = rec.scan(bytes(4096))  # space zeroed ahead of appends: free, not damage
    assert zeroed.records == [] and zeroed.damage == [] and zeroed.data_end == 0
    garbage = rec.scan(b"\x17" * 4096)
    assert garbage.records == [] and garbage.lost_records >= 1 and garbage.torn_tail_only


def test_zeroes_after_the_data_are_free_space() -> None:
    frames = [rec.encode(_event_record(n)) for n in range(3)]
    data = b"".join(frames)
    result = rec.scan(data + bytes(1000))
    assert len(result.records) == 3 and result.damage == [] and result.data_end == len(data)
    torn = rec.scan(data[:-7] + bytes(1000))  # a torn record, then zeroes
    assert len(torn.records) == 2 and torn.lost_records == 1 and torn.torn_tail_only
    assert torn.data_end == len(data) - 7 - len(data[:-7]) + len(data[:-7].rstrip(b"\x00"))


def test_scan_resynchronises_after_a_flipped_byte() -> None:
    frames = [rec.encode(_event_record(n)) for n in range(6)]
    data = bytearray(b"".join(frames))
    data[sum(map(len, frames[:2])) + 40] ^= 0xFF  # inside record 2
    result = rec.scan(bytes(data))
    assert [r.seq for _, _, r in result.records] == [0, 1, 3, 4, 5]
    assert len(result.damage) == 1 and result.damage[0].records == 1
    assert not result.torn_tail_only


def test_scan_of_a_torn_tail() -> None:
    frames = [rec.encode(_event_record(n)) for n in range(3)]
    result = rec.scan(b"".join(frames)[:-7])
    assert [r.seq for _, _, r in result.records] == [0, 1]
    assert result.torn_tail_only and result.lost_records == 1


def test_scan_estimates_records_lost_in_a_zeroed_stretch() -> None:
    frames = [rec.encode(_event_record(n)) for n in range(40)]
    data = bytearray(b"".join(frames))
    size = len(frames[0])
    data[5 * size:5 * size + 10 * size] = bytes(10 * size)
    result = rec.scan(bytes(data))
    assert len(result.records) == 30
    assert 9 <= result.lost_records <= 11
