"""The shared breaker: closed -> open -> half-open -> closed on an injected monotonic clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from structlog.testing import capture_logs

from agent.delivery.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    CircuitOpen,
    MonotonicBreaker,
    MonotonicStorage,
)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Boom(Exception):
    pass


def fail() -> None:
    raise Boom("backend down")


def test_opens_after_fail_max_failures_and_then_refuses_without_calling() -> None:
    clock = FakeClock()
    breaker = MonotonicBreaker(3, 30.0, clock=clock)
    for _ in range(2):
        with pytest.raises(Boom):
            breaker.call(fail)
    assert breaker.state == CLOSED and breaker.fail_count == 2
    # The tripping call re-raises its own error, so the caller classes it as usual.
    with capture_logs() as logs, pytest.raises(Boom):
        breaker.call(fail)
    assert breaker.state == OPEN
    assert any(entry["event"].startswith("circuit breaker open") and entry["log_level"] == "warning"
               for entry in logs)
    calls: list[int] = []
    with pytest.raises(CircuitOpen):
        breaker.call(lambda: calls.append(1))
    assert calls == []


def test_open_period_follows_the_injected_clock_then_half_open_trial_closes_it() -> None:
    clock = FakeClock()
    breaker = MonotonicBreaker(1, 30.0, clock=clock)
    with pytest.raises(Boom):
        breaker.call(fail)
    assert breaker.open_remaining() == pytest.approx(30.0)
    clock.now += 29.5
    assert breaker.state == OPEN
    assert breaker.open_remaining() == pytest.approx(0.5)
    with pytest.raises(CircuitOpen):
        breaker.call(lambda: "not called")
    clock.now += 0.5
    assert breaker.state == HALF_OPEN
    assert breaker.open_remaining() == 0.0
    assert breaker.call(lambda: "ok") == "ok"
    assert breaker.state == CLOSED and breaker.fail_count == 0


def test_failed_trial_reopens_for_a_fresh_period() -> None:
    clock = FakeClock()
    breaker = MonotonicBreaker(1, 10.0, clock=clock)
    with pytest.raises(Boom):
        breaker.call(fail)
    clock.now += 10.0
    assert breaker.state == HALF_OPEN
    with pytest.raises(Boom):
        breaker.call(fail)
    assert breaker.state == OPEN
    assert breaker.open_remaining() == pytest.approx(10.0)
    clock.now += 9.0
    with pytest.raises(CircuitOpen):
        breaker.call(lambda: None)


def test_a_success_resets_the_failure_count() -> None:
    breaker = MonotonicBreaker(2, 5.0, clock=FakeClock())
    with pytest.raises(Boom):
        breaker.call(fail)
    breaker.call(lambda: None)
    with pytest.raises(Boom):
        breaker.call(fail)
    assert breaker.state == CLOSED and breaker.fail_count == 1


def test_storage_reports_opened_at_from_monotonic_elapsed_time() -> None:
    clock = FakeClock(50.0)
    storage = MonotonicStorage(clock)
    assert storage.opened_at is None and storage.open_elapsed() is None
    storage.opened_at = datetime(1999, 1, 1, tzinfo=UTC)  # wall value is ignored
    clock.now += 12.0
    assert storage.open_elapsed() == 12.0
    opened = storage.opened_at
    assert opened is not None
    age = (datetime.now(UTC) - opened).total_seconds()
    assert 12.0 <= age < 13.0


def test_closed_breaker_has_nothing_remaining() -> None:
    breaker = MonotonicBreaker(1, 5.0, clock=FakeClock())
    assert breaker.state == CLOSED and breaker.open_remaining() == 0.0
