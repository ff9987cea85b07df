"""Retry timing: exponential backoff with full jitter, and Retry-After as a floor.

The delay before attempt n+1 is drawn uniformly from [0, min(cap, initial * 2**n)]
("full jitter": many agents restarted by one outage do not retry in step). A
server's Retry-After is a floor: we never come back earlier than it asks.
Times are monotonic seconds; nothing here sleeps.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    initial_s: float
    max_s: float

    def ceiling(self, failures: int) -> float:
        """The largest delay after ``failures`` consecutive failures (1 = the first)."""
        exponent = max(0, failures - 1)
        # 2**exponent overflows float for silly counts; the cap is reached long before.
        if exponent >= 64:
            return self.max_s
        return min(self.max_s, self.initial_s * (2 ** exponent))

    def delay(self, failures: int, rng: random.Random, retry_after_s: float | None = None) -> float:
        """How long to wait after ``failures`` consecutive failures, never less than Retry-After."""
        drawn = rng.uniform(0.0, self.ceiling(failures))
        if retry_after_s is not None and retry_after_s > drawn:
            return retry_after_s
        return drawn


@dataclass(frozen=True)
class Attempt:
    """What we know about one event's delivery: consecutive failures and when to try next."""

    failures: int = 0
    next_at: float = 0.0

    def failed(self, now: float, backoff: Backoff, rng: random.Random,
               retry_after_s: float | None = None) -> Attempt:
        failures = self.failures + 1
        return Attempt(failures, now + backoff.delay(failures, rng, retry_after_s))

    def held(self, until: float) -> Attempt:
        """Not a failure (not paired, breaker open): keep the count, move the time."""
        return Attempt(self.failures, until)

    def due(self, now: float) -> bool:
        return now >= self.next_at
