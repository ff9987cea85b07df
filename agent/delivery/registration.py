"""The device's identity as the sender needs it: registered in the background, reminded, re-made.

Registration never stops the agent: while the backend is down it is retried
with full-jitter backoff capped at ``delivery.register_backoff_max_s`` and the
events wait in the journal. The pairing code is logged at WARNING when a
device registers and then every ``PAIRING_REMINDER_S`` until a pending item is
accepted (the device is paired; that is persisted in the identity).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Protocol

import structlog

from agent import __version__
from agent.clock import utc_iso
from agent.config import Config
from agent.delivery.backoff import Attempt, Backoff
from agent.delivery.client import REFUSED, BackendClient
from agent.delivery.identity import Identity, redact_url, same_backend
from agent.errors import OperationalError

log = structlog.get_logger(__name__)

PAIRING_REMINDER_S = 300.0


class IdentityStoreLike(Protocol):
    def load(self) -> Identity | None: ...

    def save(self, identity: Identity) -> None: ...


class Registrar:
    """Holds the current identity and registers a new one when due or told to."""

    def __init__(self, client: BackendClient, store: IdentityStoreLike, config: Config, *,
                 rng: random.Random, wall_clock: Callable[[], float] = time.time,
                 budget: Callable[[], float | None] = lambda: None) -> None:
        self._client = client
        self._store = store
        self._config = config
        self._rng = rng
        self._wall_clock = wall_clock
        # Seconds a register call may take now (None: the client's own timeouts).
        self._budget = budget
        self._backoff = Backoff(config.delivery.backoff_initial_s,
                                config.delivery.register_backoff_max_s)
        self._attempt = Attempt()
        self._remind_at = 0.0
        self.last_error = ""
        # How the last registration attempt failed: "" (it did not), "down" (no answer,
        # 5xx, breaker open), "refused" (a 4xx: the backend will not register us).
        self.failure = ""
        self.failure_status: int | None = None
        # Counts registrations made by this process (a stored identity is not one).
        self.registrations = 0
        self.identity: Identity | None = store.load()
        if self.identity is not None and not same_backend(self.identity.backend_url,
                                                          config.backend.url):
            log.warning("stored identity belongs to another backend; registering again",
                        stored_backend=redact_url(self.identity.backend_url),
                        backend=redact_url(config.backend.url))
            self.identity = None
        if self.identity is not None:
            log.info("reusing stored identity", device_id=self.identity.device_id,
                     paired=self.identity.paired)

    # -- state --------------------------------------------------------------------------------

    @property
    def registered(self) -> bool:
        return self.identity is not None

    @property
    def paired(self) -> bool:
        return self.identity is not None and bool(self.identity.paired)

    @property
    def next_register_at(self) -> float:
        return self._attempt.next_at

    def next_due(self) -> float:
        if self.identity is None:
            return self._attempt.next_at
        if not self.identity.paired:
            return self._remind_at
        return float("inf")

    # -- actions ------------------------------------------------------------------------------

    def forget(self, now: float) -> None:
        """The backend no longer knows our device: register again as soon as possible."""
        log.warning("backend does not know this device any more; registering again",
                    device_id=self.identity.device_id if self.identity else None)
        self.identity = None
        self._attempt = Attempt(0, now)

    def ensure(self, now: float) -> bool:
        """Register if we have no identity and a try is due; True when we hold an identity."""
        if self.identity is not None:
            return True
        if not self._attempt.due(now):
            return False
        budget = self._budget()
        if budget is not None and budget <= 0:
            return False  # no time left for a call; not a failure
        result = self._client.register(__version__, timeout_s=budget)
        if not result.ok:
            outcome = result.outcome
            self._attempt = self._attempt.failed(now, self._backoff, self._rng,
                                                 outcome.retry_after_s)
            self.last_error = f"registration failed: {outcome.error or outcome.kind.value}"
            self.failure = "refused" if outcome.kind is REFUSED else "down"
            self.failure_status = outcome.status
            level = log.error if outcome.kind is REFUSED else log.warning
            level("registration failed; will retry", error=outcome.error, status=outcome.status,
                  path=self._config.backend.register_path, attempt=self._attempt.failures,
                  retry_in_s=round(self._attempt.next_at - now, 1))
            return False
        self.identity = result.identity(self._config.backend.url, utc_iso(self._wall_clock()))
        self.registrations += 1
        self._attempt = Attempt()
        self.last_error = ""
        self.failure = ""
        self._save()
        self._announce(now)
        return True

    def set_paired(self, paired: bool) -> None:
        if self.identity is None or bool(self.identity.paired) == paired:
            return
        self.identity = self.identity.with_paired(paired)
        self._save()
        if paired:
            log.info("device paired", device_id=self.identity.device_id)
        else:
            log.warning("backend says this device is not paired any more",
                        device_id=self.identity.device_id, code=self.identity.code)

    def _save(self) -> None:
        """Persist the identity; a full or read-only disk must not stop delivery."""
        assert self.identity is not None
        try:
            self._store.save(self.identity)
        except OperationalError as exc:
            log.error("identity not saved; delivering with it anyway (a restart registers again)",
                      error=str(exc), device_id=self.identity.device_id)

    def remind(self, now: float) -> None:
        """Log the pairing code at WARNING every few minutes until the device is paired."""
        if self.identity is None or self.identity.paired or now < self._remind_at:
            return
        self._announce(now)

    def _announce(self, now: float) -> None:
        self._remind_at = now + PAIRING_REMINDER_S
        if self.identity is None or self.identity.paired:
            return
        log.warning("device not paired: enter this code in the basket web app",
                    code=self.identity.code, device_id=self.identity.device_id)
