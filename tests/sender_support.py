"""What the sender, flush, status and requeue tests share: a stepped clock, events, configs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.basket.event import ROUTE_BASKET, ROUTE_PENDING, ProductEvent
from agent.clock import utc_iso, uuid7
from agent.config import Config, build_config


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
