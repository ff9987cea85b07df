"""What the sender, client, flush, status and requeue tests share: stepped clocks, events, configs,
a sender rig on real parts, client helpers."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from agent.basket.event import ROUTE_BASKET, ROUTE_PENDING, ProductEvent
from agent.clock import utc_iso, uuid7
from agent.config import BackendConfig, Config, DeliveryConfig, build_config
from agent.delivery.client import BackendClient, Registration
from agent.delivery.identity import IdentityStore
from agent.delivery.journal import Journal
from agent.delivery.sender import Sender
from agent.devserver import ReferenceBackend

REGISTER = "/api/devices/register"
BASKET = "/api/basket"
PENDING = "/api/pending-items"


class SteppedClock:
    """Monotonic time that moves only when told; ``wait`` moves it instead of sleeping."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def wait(self, event: threading.Event, timeout: float) -> bool:
        self.waits.append(timeout)
        if event.is_set():
            return True
        self.now += timeout
        return event.is_set()


class ThreadClock(SteppedClock):
    """A stepped clock for a sender's own thread.

    Its first ``rounds`` waits move the clock instead of sleeping, as ``SteppedClock.wait``
    does; after those the thread parks on its event until ``wake()`` or ``stop()`` sets it
    (bounded by ``park_s``), so a test can look at a thread that has stopped moving.
    """

    def __init__(self, rounds: int, start: float = 1000.0, park_s: float = 30.0) -> None:
        super().__init__(start)
        self.rounds = rounds
        self.park_s = park_s
        self.parked = threading.Event()
        self._lock = threading.Lock()

    def wait(self, event: threading.Event, timeout: float) -> bool:
        with self._lock:
            self.waits.append(timeout)
            stepped = len(self.waits) <= self.rounds
        if stepped:
            self.now += timeout
            return event.is_set()
        self.parked.set()
        return event.wait(self.park_s)


class RecordingWait:
    """The sender's wait on its event, for real, keeping each timeout and whether the event ended it."""

    def __init__(self) -> None:
        self.timeouts: list[float] = []
        self.ended_by_event: list[bool] = []

    def __call__(self, event: threading.Event, timeout: float) -> bool:
        self.timeouts.append(timeout)
        ended = event.wait(timeout)
        self.ended_by_event.append(ended)
        return ended


def make_config(state_dir: Path, url: str, **delivery: Any) -> Config:
    backend = delivery.pop("backend", {})
    return build_config(flags={
        "backend": {"url": url, "connect_timeout_s": 2.0, "read_timeout_s": 2.0, **backend},
        "state": {"dir": str(state_dir)},
        "delivery": delivery,
    })


def make_event(route: str = ROUTE_BASKET, product_id: str = "P001", *,
               quantity: int = 1) -> ProductEvent:
    confidence = 0.92 if route == ROUTE_BASKET else 0.61
    return ProductEvent(event_id=uuid7(), route=route, product_id=product_id,
                        name="Organic Apples", quantity=quantity, confidence=confidence,
                        detected_at=utc_iso(time.time()))


def basket_event(product_id: str = "P001") -> ProductEvent:
    return make_event(ROUTE_BASKET, product_id)


def pending_event(product_id: str = "P002") -> ProductEvent:
    return make_event(ROUTE_PENDING, product_id)


def free_port() -> int:
    """A loopback port nobody listens on (the backend is started on it later)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll a real thread's progress (bounded); for thread tests only, never for timers."""
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while time.monotonic() < deadline:
        if predicate():
            return True
        tick.wait(0.01)
    return predicate()


# -- the sender on real parts, stepped -----------------------------------------------------------


class Rig:
    """A sender with real parts, a stepped clock, and the backend it talks to."""

    def __init__(self, state_dir: Path, url: str, **delivery: Any) -> None:
        self.clock = SteppedClock()
        self.config = make_config(state_dir, url, **delivery)
        self.journal = Journal.open(self.config.state_dir, self.config.journal)
        self.client = BackendClient(self.config.backend, self.config.delivery, clock=self.clock)
        self.store = IdentityStore(self.config.state_dir, backend_url=url)
        self.sender = Sender(self.journal, self.client, self.store, self.config,
                             clock=self.clock, rng=random.Random(5), wait=self.clock.wait)

    def append(self, *events: ProductEvent) -> None:
        for event in events:
            self.journal.append(event)

    def step(self) -> float:
        return self.sender.step(self.clock())

    def step_at(self, when: float) -> float:
        self.clock.now = max(self.clock.now, when)
        return self.step()

    def pending_ids(self, route: str | None = None) -> list[str]:
        return [entry.event.event_id for entry in self.journal.pending(route, limit=10_000)]

    def close(self) -> None:
        self.sender.stop(1.0)
        self.client.close()
        self.journal.close()


def calls(backend: ReferenceBackend, path: str) -> int:
    return sum(1 for call in backend.calls if call.path == path)


def stored_ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["eventId"] for item in items]


def warnings_with_code(logs: list[dict[str, Any]], code: str | None) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["log_level"] == "warning" and entry.get("code") == code]


# -- the client ----------------------------------------------------------------------------------

WALL_NOW = 1_796_400_000.0  # 2026-12-04T16:00:00Z


class FakeClock:
    def __init__(self, now: float = 500.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_client(backend: ReferenceBackend, *, fail_max: int = 5, reset_s: float = 30.0,
                clock: FakeClock | None = None, read_timeout_s: float = 5.0,
                session: requests.Session | None = None, url: str | None = None) -> BackendClient:
    config = BackendConfig(url=url or backend.url, connect_timeout_s=2.0,
                           read_timeout_s=read_timeout_s)
    delivery = DeliveryConfig(breaker_fail_max=fail_max, breaker_reset_s=reset_s)
    return BackendClient(config, delivery, session=session, clock=clock or FakeClock(),
                         wall_clock=lambda: WALL_NOW)


def item(device_id: str, event_id: str = "0193a4c2-0001", **changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"productId": "P001", "quantity": 1, "confidence": 0.92,
                               "deviceId": device_id, "eventId": event_id,
                               "detectedAt": "2026-12-04T10:00:00.123Z", "name": "Organic Apples"}
    payload.update(changes)
    return payload


def registered(client: BackendClient) -> Registration:
    result = client.register()
    assert result.ok, result
    return result
