"""A pybreaker circuit breaker that times its open period on an injected monotonic clock.

pybreaker 1.x stamps ``opened_at = datetime.now(UTC)`` when it opens and, on
the next call, stays open while ``datetime.now(UTC) < opened_at +
reset_timeout``. A wall-clock step (NTP at boot, a person setting the date)
would then shorten or stretch the open period arbitrarily, and tests could not
step time. The storage below records the monotonic time of opening instead and
reports ``opened_at`` as "now minus the monotonic time elapsed", so pybreaker's
own comparison reduces to ``elapsed < reset_timeout`` on our clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pybreaker
import structlog

log = structlog.get_logger(__name__)

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"


class MonotonicStorage(pybreaker.CircuitMemoryStorage):
    """In-memory breaker state whose open period follows ``clock`` (monotonic seconds)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(pybreaker.STATE_CLOSED)
        self._clock = clock
        self._opened_mono: float | None = None

    @property
    def opened_at(self) -> datetime | None:
        if self._opened_mono is None:
            return None
        elapsed = self._clock() - self._opened_mono
        return datetime.now(UTC) - timedelta(seconds=elapsed)

    @opened_at.setter
    def opened_at(self, _wall: datetime) -> None:
        # pybreaker passes its wall-clock "now"; the monotonic time is what counts.
        self._opened_mono = self._clock()

    def open_elapsed(self) -> float | None:
        """Monotonic seconds since the breaker last opened, None if it never did."""
        if self._opened_mono is None:
            return None
        return self._clock() - self._opened_mono


class _LogTransitions(pybreaker.CircuitBreakerListener):
    def state_change(self, cb: pybreaker.CircuitBreaker, old_state, new_state) -> None:  # type: ignore[no-untyped-def]
        old = old_state.name if old_state is not None else None
        if new_state.name == pybreaker.STATE_OPEN:
            log.warning("circuit breaker open: backend calls paused", previous=old,
                        failures=cb.fail_counter, reset_s=cb.reset_timeout)
        else:
            log.info("circuit breaker state changed", state=new_state.name, previous=old)


class MonotonicBreaker:
    """The breaker every backend route shares, plus a readable state for status lines.

    pybreaker holds its lock for the whole guarded call, so calls through one
    breaker run one at a time; the sender is the only frequent caller.
    """

    def __init__(self, fail_max: int, reset_s: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._storage = MonotonicStorage(clock)
        self._reset_s = reset_s
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_s,
            state_storage=self._storage,
            listeners=[_LogTransitions()],
            # Re-raise the call's own error on the tripping call so it is classed like any other.
            throw_new_error_on_trip=False,
            name="backend",
        )

    def call(self, func: Callable[[], object]) -> object:
        return self.breaker.call(func)

    @property
    def state(self) -> str:
        """closed, open, or half-open (open but the next call is let through as a trial)."""
        current = self.breaker.current_state
        if current == pybreaker.STATE_OPEN and self.open_remaining() <= 0:
            return HALF_OPEN
        return {pybreaker.STATE_CLOSED: CLOSED, pybreaker.STATE_OPEN: OPEN,
                pybreaker.STATE_HALF_OPEN: HALF_OPEN}[current]

    def open_remaining(self) -> float:
        """Seconds until an open breaker lets a trial call through (0 when not open)."""
        if self.breaker.current_state != pybreaker.STATE_OPEN:
            return 0.0
        elapsed = self._storage.open_elapsed()
        if elapsed is None:
            return 0.0
        return max(0.0, self._reset_s - elapsed)

    @property
    def fail_count(self) -> int:
        return self.breaker.fail_counter


CircuitOpen = pybreaker.CircuitBreakerError
