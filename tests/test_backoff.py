"""Backoff: full jitter within the doubling ceiling, the cap, Retry-After as a floor."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from agent.delivery.backoff import Attempt, Backoff


def test_ceiling_doubles_from_initial_and_stops_at_the_cap() -> None:
    backoff = Backoff(initial_s=1.0, max_s=60.0)
    assert [backoff.ceiling(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff.ceiling(0) == 1.0
    assert backoff.ceiling(10_000) == 60.0


@given(failures=st.integers(min_value=1, max_value=200), seed=st.integers(0, 2**32 - 1),
       initial=st.floats(0.01, 10.0), cap=st.floats(10.0, 600.0))
def test_delay_is_within_zero_and_the_ceiling(failures: int, seed: int, initial: float,
                                              cap: float) -> None:
    backoff = Backoff(initial, cap)
    delay = backoff.delay(failures, random.Random(seed))
    assert 0.0 <= delay <= backoff.ceiling(failures) <= cap


def test_delays_are_spread_not_fixed() -> None:
    backoff = Backoff(1.0, 60.0)
    rng = random.Random(7)
    delays = [backoff.delay(6, rng) for _ in range(200)]
    assert min(delays) < 8.0 and max(delays) > 24.0  # full jitter over [0, 32]


@given(seed=st.integers(0, 2**32 - 1), retry_after=st.floats(0.0, 1000.0),
       failures=st.integers(1, 30))
def test_retry_after_is_a_floor(seed: int, retry_after: float, failures: int) -> None:
    delay = Backoff(1.0, 60.0).delay(failures, random.Random(seed), retry_after)
    assert delay >= retry_after


def test_attempt_counts_failures_and_moves_next_time() -> None:
    backoff = Backoff(1.0, 4.0)
    rng = random.Random(1)
    attempt = Attempt()
    assert attempt.due(0.0)
    for n in range(1, 6):
        attempt = attempt.failed(100.0, backoff, rng)
        assert attempt.failures == n
        assert 100.0 <= attempt.next_at <= 100.0 + backoff.ceiling(n)
    held = attempt.held(500.0)
    assert held.failures == attempt.failures and held.next_at == 500.0
    assert not held.due(499.9) and held.due(500.0)


def test_attempt_honours_retry_after() -> None:
    attempt = Attempt().failed(10.0, Backoff(1.0, 60.0), random.Random(0), retry_after_s=30.0)
    assert attempt.next_at == 40.0
