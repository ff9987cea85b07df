"""The sender: journaled events to the backend, in its own thread, never blocking the frame loop.

One round of work is ``step(now)``: register if needed, then for each route
send the journaled events oldest first until one cannot go yet, and return the
monotonic time when there is next something to do. The thread loop calls it and
waits on an ``Event`` (``wake()`` sets it; ``stop()`` sets it too), so stopping
never waits out a backoff, only at most one bounded HTTP call.

Per the backend contract:
- 2xx: acknowledged in the journal. On the pending route it also means the
  device is paired (persisted in the identity).
- transient (5xx, 408, 429, no answer): the event keeps its place and gets a
  next-attempt time from full-jitter backoff, never earlier than Retry-After.
  Only its route waits: per-route order is kept, the other route goes on.
- breaker open: no route sends until the breaker may half-open.
- 400 on pending (not paired): that event and the pending route wait
  ``delivery.not_paired_retry_s``; basket events are not held up.
- device unknown (404/401/403/410): register again once, then re-send with the
  new deviceId. If the route still answers so right after a fresh registration
  the fault is the config (a wrong path): the route stops sending until the
  agent restarts (its events stay journaled), logged at ERROR and shown in
  status. A restart after fixing the config delivers them.
- other 4xx: the event is moved to the dead letters with status and body start.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from agent.basket.event import ROUTE_BASKET, ROUTE_PENDING, ROUTES, ProductEvent
from agent.config import Config
from agent.delivery.backoff import Attempt, Backoff
from agent.delivery.client import BackendClient, Outcome, OutcomeKind, event_payload
from agent.delivery.journal import Journal
from agent.delivery.live_status import live_status_path, write_live_status
from agent.delivery.registration import IdentityStoreLike, Registrar
from agent.errors import AgentError, BackendConfigFault

log = structlog.get_logger(__name__)

BATCH = 100
# Retry state is dropped with its event's ack or dead letter; events that leave the
# journal otherwise (expired, overflowed) are swept out once this many are held.
ATTEMPTS_PRUNE_AT = 1000
# With nothing due the thread still wakes this often (a missed wake() costs at most this).
IDLE_S = 30.0

# On Linux a thread has its own nice value: delivery yields the CPU to detection when
# both want it (a backlog drains on a busy 2-core Pi without costing frames).
SENDER_NICE = 10

Wait = Callable[[threading.Event, float], bool]


def _lower_thread_priority(nice: int) -> None:
    """Add ``nice`` to this thread's niceness (Linux: each thread is its own task)."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except (OSError, AttributeError):  # not Linux, or not allowed: run at normal priority
        log.debug("sender priority unchanged")


def _event_wait(event: threading.Event, timeout: float) -> bool:
    return event.wait(timeout)


@dataclass(frozen=True)
class SenderStatus:
    device_id: str | None
    pairing_code: str | None
    paired: bool
    breaker: str
    last_error: str
    # Why events are waiting, if they are: "" (they are not), "backend down" (also while
    # not registered yet), "not paired", "config fault".
    blocked: str = ""


class Sender:
    def __init__(self, journal: Journal, client: BackendClient,
                 identity_store: IdentityStoreLike, config: Config, *,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None, wait: Wait | None = None,
                 live_status: Path | None = None, send_share: float = 1.0) -> None:
        self._journal = journal
        # The share of wall time the thread may spend sending while more is due at once.
        # Beside the frame loop it is kept small: Python's GIL makes a busy sender cost
        # detection frames, and a backlog may drain slower but detection must not slow.
        self._send_share = send_share
        self._client = client
        self._config = config
        self._clock = clock
        self._rng = rng or random.Random()
        self._wait = wait or _event_wait
        self._backoff = Backoff(config.delivery.backoff_initial_s, config.delivery.backoff_max_s)
        # While a drain runs, no HTTP call may outlast its deadline (monotonic, on ``clock``).
        self._drain_deadline: float | None = None
        self._registrar = Registrar(client, identity_store, config, rng=self._rng,
                                    budget=self._call_budget)
        self._attempts: dict[str, Attempt] = {}
        self._faults: dict[str, BackendConfigFault] = {}
        # Routes that have had no answer since the last registration: a "device
        # unknown" there means the call itself is wrong, not the device.
        self._fresh: set[str] = set()
        self._registrations_seen = 0
        self._breaker_until = float("-inf")
        self._not_paired = False
        self._backend_down = False
        self._last_error = ""
        # Events this sender had a 2xx for, and moved to the dead letters on a refusal.
        self.delivered = 0
        self.refused = 0
        self._step_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Written by the thread only (a foreground drain, as in `flush`, is no running service).
        self._live_path = live_status or live_status_path(config.state_dir)
        self._live_written: dict[str, Any] | None = None

    # -- the thread ------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="basketagent-sender", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Something was journaled: look now. Never blocks."""
        self._wake.set()

    def stop(self, timeout: float) -> None:
        """Stop the thread within ``timeout`` (plus a bounded HTTP call at worst if it is longer).

        What is not delivered stays journaled. An HTTP call in flight when the
        timeout passes is left to its own timeout on the daemon thread.
        """
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(max(0.0, timeout))
            if thread.is_alive():
                log.warning("sender still in an HTTP call at shutdown; leaving it to its timeout",
                            timeout_s=timeout)
        self._thread = None

    def _run(self) -> None:
        _lower_thread_priority(SENDER_NICE)
        log.info("sender started")
        while not self._stop.is_set():
            self._wake.clear()
            started = self._clock()
            try:
                with self._step_lock:
                    next_due = self.step(started)
            except AgentError as exc:
                log.error("delivery round failed; will retry", error=str(exc))
                next_due = self._clock() + self._config.delivery.backoff_initial_s
            except Exception:  # a bug must not end delivery for the life of the service
                log.exception("delivery round failed unexpectedly; will retry")
                next_due = self._clock() + self._config.delivery.backoff_max_s
            self._publish(running=True)
            now = self._clock()
            if self._send_share < 1.0 and next_due <= now:
                # More is due at once: rest in proportion to the time just spent sending.
                # New events (wake) do not cut the rest short; stop does.
                self._wait(self._stop, (now - started) * (1.0 / self._send_share - 1.0))
                now = self._clock()
            delay = min(max(0.0, next_due - now), IDLE_S)
            if delay > 0 and not self._stop.is_set():
                self._wait(self._wake, delay)
        self._publish(running=False)
        log.info("sender stopped")

    def _publish(self, *, running: bool) -> None:
        status = self.status()
        data: dict[str, Any] = {
            "running": running, "pid": os.getpid(), "breaker": status.breaker,
            "deviceId": status.device_id, "paired": status.paired,
            "lastError": status.last_error, "blocked": status.blocked,
        }
        if data == self._live_written:
            return
        try:
            write_live_status(self._live_path, data)
        except OSError as exc:  # best effort: status then says what a stopped agent would
            log.warning("cannot write the delivery status file", path=str(self._live_path),
                        error=exc.strerror or str(exc))
        self._live_written = data

    def drain(self, timeout: float) -> bool:
        """Deliver until the journal is empty (True) or time or the backend's state stops it.

        Returns within ``timeout`` plus at most a connect timeout: each HTTP call's
        timeouts are capped by the time left, and none starts once it is gone.
        """
        deadline = self._clock() + max(0.0, timeout)
        self._drain_deadline = deadline
        try:
            return self._drain_until(deadline)
        finally:
            self._drain_deadline = None

    def _drain_until(self, deadline: float) -> bool:
        while True:
            if self._stop.is_set():
                return self._journal.stats().pending == 0
            now = self._clock()
            if not self._step_lock.acquire(timeout=max(0.0, deadline - now)):
                return self._journal.stats().pending == 0
            try:
                next_due = self.step(now)
            finally:
                self._step_lock.release()
            if self._journal.stats().pending == 0:
                return True
            now = self._clock()
            if now >= deadline or next_due > deadline:
                return False
            if next_due > now and self._wait(self._stop, next_due - now):
                return False

    # -- one round of work ----------------------------------------------------------------

    def step(self, now: float) -> float:
        """Do the work due at ``now``; return the monotonic time when more is due."""
        registrar = self._registrar
        registrar.remind(now)
        if not registrar.ensure(now):
            return registrar.next_due()
        if registrar.registrations != self._registrations_seen:
            self._registrations_seen = registrar.registrations
            self._fresh = set(ROUTES)
        due = registrar.next_due()
        for route in ROUTES:
            if self._stop.is_set() or registrar.identity is None:
                break
            due = min(due, self._send_route(route, now))
        if registrar.identity is None:  # forgotten mid-round: register on the next round
            due = min(due, registrar.next_due())
        return due

    def _send_route(self, route: str, now: float) -> float:
        if route in self._faults:
            return float("inf")
        if len(self._attempts) > ATTEMPTS_PRUNE_AT:
            self._prune_attempts()
        entries = self._journal.pending(route, limit=BATCH)
        if not entries:
            if route == ROUTE_PENDING:
                self._not_paired = False
            return float("inf")
        if now < self._breaker_until:
            return self._breaker_until
        for entry in entries:
            if self._stop.is_set():
                return now
            event = entry.event
            attempt = self._attempts.get(event.event_id)
            if attempt is not None and not attempt.due(now):
                return attempt.next_at
            identity = self._registrar.identity
            if identity is None:
                return now
            budget = self._call_budget()
            if budget is not None and budget <= 0:
                return now  # the drain's time is up
            outcome = self._client.send(route, event_payload(event, identity.device_id),
                                        event.event_id, timeout_s=budget)
            now = self._clock()
            blocked_until = self._handle(route, event, outcome, now)
            if blocked_until is not None:
                return blocked_until
        return now if len(entries) == BATCH else float("inf")

    def _call_budget(self) -> float | None:
        """Seconds an HTTP call may take: the time left of a running drain, else None (no cap)."""
        deadline = self._drain_deadline
        return None if deadline is None else deadline - self._clock()

    def _prune_attempts(self) -> None:
        """Forget the retry state of events no longer pending (expired, overflowed, dead)."""
        limit = len(self._attempts) + BATCH  # retry state is only ever held near a route's head
        pending = {entry.event.event_id for route in ROUTES
                   for entry in self._journal.pending(route, limit=limit)}
        self._attempts = {key: value for key, value in self._attempts.items() if key in pending}

    def _handle(self, route: str, event: ProductEvent, outcome: Outcome,
                now: float) -> float | None:
        """Act on one answer; return when the route may go on, or None to go on now."""
        kind = outcome.kind
        if kind in (OutcomeKind.DELIVERED, OutcomeKind.REFUSED, OutcomeKind.NOT_PAIRED):
            self._fresh.discard(route)
            self._backend_down = False
        if kind is OutcomeKind.DELIVERED:
            self._journal.ack(event.event_id)
            self.delivered += 1
            self._attempts.pop(event.event_id, None)
            if route == ROUTE_PENDING:
                self._not_paired = False
                self._registrar.set_paired(True)
            self._last_error = ""
            return None
        if kind is OutcomeKind.REFUSED:
            log.error("backend refused an event; moved to dead letters", event_id=event.event_id,
                      route=route, status=outcome.status, body_start=outcome.body_start[:200])
            self._journal.dead_letter(event.event_id, outcome.status or 0, outcome.body_start,
                                      "refused")
            self.refused += 1
            self._attempts.pop(event.event_id, None)
            return None
        if kind is OutcomeKind.NOT_PAIRED:
            until = now + self._config.delivery.not_paired_retry_s
            self._attempts[event.event_id] = self._attempts.get(event.event_id, Attempt()).held(until)
            if not self._not_paired:
                log.info("pending item held until the device is paired", event_id=event.event_id,
                         retry_in_s=self._config.delivery.not_paired_retry_s)
            self._not_paired = True
            self._registrar.set_paired(False)
            return until
        if kind is OutcomeKind.UNKNOWN_DEVICE:
            return self._unknown_device(route, outcome, now)
        if kind is OutcomeKind.BREAKER_OPEN:
            wait_s = outcome.retry_after_s or self._config.delivery.breaker_reset_s
            self._breaker_until = now + wait_s
            self._backend_down = True
            self._last_error = "circuit breaker open: backend failing"
            return self._breaker_until
        # Transient: back off this event; its route waits, in order.
        attempt = self._attempts.get(event.event_id, Attempt()).failed(
            now, self._backoff, self._rng, outcome.retry_after_s)
        self._attempts[event.event_id] = attempt
        self._backend_down = True
        self._last_error = f"backend not answering: {outcome.error or outcome.status}"
        log.warning("delivery failed; will retry", route=route, event_id=event.event_id,
                    status=outcome.status, attempt=attempt.failures,
                    retry_in_s=round(attempt.next_at - now, 2))
        return attempt.next_at

    def _unknown_device(self, route: str, outcome: Outcome, now: float) -> float:
        if route not in self._fresh:
            self._registrar.forget(now)
            return now
        key = "basket_path" if route == ROUTE_BASKET else "pending_path"
        path = getattr(self._config.backend, key)
        fault = BackendConfigFault(
            f"the backend refuses POST {path} even for a freshly registered device: "
            f"check backend.{key} and backend.url",
            fix=f"HTTP {outcome.status}; {route} events stay journaled until the agent is "
                "restarted with the config fixed",
        )
        self._faults[route] = fault
        self._last_error = str(fault)
        log.error(str(fault), route=route, status=outcome.status)
        return float("inf")

    # -- state for people ------------------------------------------------------------------

    def status(self) -> SenderStatus:
        identity = self._registrar.identity
        return SenderStatus(
            device_id=identity.device_id if identity else None,
            pairing_code=identity.code if identity else None,
            paired=self._registrar.paired,
            breaker=self._client.breaker_state,
            last_error=self._last_error or self._registrar.last_error,
            blocked=self._blocked(),
        )

    def _blocked(self) -> str:
        if self._faults:
            return "config fault"
        if not self._registrar.registered or self._backend_down:
            return "backend down"
        if self._not_paired:
            return "not paired"
        return ""

    def status_line(self) -> str:
        """Short text for systemd STATUS; reads memory and journal counters, no network."""
        stats = self._journal.stats()
        parts = ["journal empty" if stats.pending == 0 else f"journal {stats.pending} pending"]
        if stats.dead_letters:
            parts.append(f"{stats.dead_letters} dead letters")
        if self._faults:
            parts.append("config fault: " + ", ".join(sorted(self._faults)) + " stopped")
        identity = self._registrar.identity
        if identity is None:
            parts.append("not registered")
        elif self._registrar.paired:
            parts.append("paired")
        else:
            parts.append(f"not paired, code {identity.code}")
        failure = self._registrar.failure if identity is None else ""
        if failure == "refused":
            parts.append(f"registration refused: HTTP {self._registrar.failure_status}, "
                         f"check backend.register_path")
        breaker = self._client.breaker_state
        if breaker != "closed":
            parts.append(f"breaker {breaker}")
        elif failure == "refused":
            pass  # the backend answered: it is up, and the line above says what it said
        else:
            down = self._backend_down or failure == "down"
            parts.append("backend down" if down else "backend ok")
        return "; ".join(parts)
