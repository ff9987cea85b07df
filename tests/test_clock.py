"""Event ids, timestamps and clock sync detection."""

from __future__ import annotations

import sys
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.clock import ClockSync, Uuid7Generator, kernel_clock_synced, utc_iso, uuid7

T0_NS = 1_796_378_400_123_456_789  # 2026-12-04T10:00:00.123456789Z


def millis_of(text: str) -> int:
    return uuid.UUID(text).int >> 80


def test_uuid7_is_a_version_7_rfc_uuid_with_the_millisecond_timestamp() -> None:
    generate = Uuid7Generator(clock_ns=lambda: T0_NS)
    value = uuid.UUID(generate())
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert millis_of(str(value)) == T0_NS // 1_000_000
    assert datetime.fromtimestamp((value.int >> 80) / 1000, tz=UTC).year == 2026


def test_uuid7_strictly_increases_within_the_same_millisecond() -> None:
    # Random bits that go down every time: only the monotonic increment keeps order.
    falling = iter(range(10_000, 0, -1))
    generate = Uuid7Generator(clock_ns=lambda: T0_NS, randbits=lambda bits: next(falling))
    ids = [generate() for _ in range(5_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 7 for i in ids)


def test_uuid7_keeps_increasing_when_the_wall_clock_steps_back() -> None:
    generate = Uuid7Generator(clock_ns=lambda: T0_NS)
    first = generate()
    earlier = generate(now_ns=T0_NS - 3_600 * 10**9)
    later = generate(now_ns=T0_NS + 5_000_000)
    assert first < earlier < later
    assert millis_of(earlier) == millis_of(first)
    assert millis_of(later) == (T0_NS + 5_000_000) // 1_000_000


def test_uuid7_increment_carries_into_the_timestamp_without_breaking_the_format() -> None:
    generate = Uuid7Generator(clock_ns=lambda: T0_NS, randbits=lambda bits: (1 << bits) - 1)
    first, second = generate(), generate()
    assert second > first
    assert millis_of(second) == millis_of(first) + 1
    assert uuid.UUID(second).version == 7 and uuid.UUID(second).variant == uuid.RFC_4122


def test_uuid7_is_unique_and_ordered_across_threads() -> None:
    generate = Uuid7Generator(clock_ns=lambda: T0_NS)
    results: list[list[str]] = [[] for _ in range(4)]

    def work(out: list[str]) -> None:
        out.extend(generate() for _ in range(2_000))

    threads = [threading.Thread(target=work, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    everything = [i for out in results for i in out]
    assert len(set(everything)) == 8_000
    assert all(out == sorted(out) for out in results)


def test_module_uuid7_uses_the_real_clock() -> None:
    a, b = uuid7(), uuid7()
    assert a < b
    assert uuid.UUID(a).version == 7


@given(st.integers(min_value=0, max_value=2**48 * 1_000_000 - 1))
def test_uuid7_encodes_any_timestamp(now_ns: int) -> None:
    value = Uuid7Generator(randbits=lambda bits: 0)(now_ns)
    assert millis_of(value) == now_ns // 1_000_000
    assert uuid.UUID(value).version == 7


def test_utc_iso_has_milliseconds_and_z() -> None:
    assert utc_iso(T0_NS / 1e9) == "2026-12-04T10:00:00.123Z"
    assert utc_iso(1_796_378_400.0) == "2026-12-04T10:00:00.000Z"
    assert utc_iso(0) == "1970-01-01T00:00:00.000Z"


@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))
def test_utc_iso_round_trips_to_the_millisecond(seconds: float) -> None:
    text = utc_iso(seconds)
    assert len(text) == 24 and text.endswith("Z")
    parsed = datetime.fromisoformat(text).timestamp()
    assert abs(parsed - seconds) < 0.001 + 1e-6


def test_clock_sync_trusts_the_timesyncd_flag(tmp_path: Path) -> None:
    flag = tmp_path / "synchronized"
    sync = ClockSync(flag_path=flag, kernel=lambda: False)
    assert sync() is False
    flag.touch()
    assert sync() is True


def test_clock_sync_falls_back_to_the_kernel_state(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert ClockSync(flag_path=missing, kernel=lambda: True)() is True
    assert ClockSync(flag_path=missing, kernel=lambda: False)() is False


def test_clock_sync_counts_unknown_as_not_synced(tmp_path: Path) -> None:
    def broken() -> bool | None:
        raise OSError("adjtimex not permitted")

    missing = tmp_path / "nope"
    assert ClockSync(flag_path=missing, kernel=lambda: None)() is False
    assert ClockSync(flag_path=missing, kernel=broken)() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="adjtimex is Linux only")
def test_kernel_clock_synced_reads_adjtimex_on_linux() -> None:
    # Read only (modes = 0): works unprivileged, so the answer is known, not None.
    first = kernel_clock_synced()
    assert isinstance(first, bool)
    assert kernel_clock_synced() == first
