"""Canned answers queued by tests: errors, slow answers, cut-off bodies, dropped connections."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass
class Fault:
    """One canned answer for requests whose path starts with ``path_prefix``.

    ``raw`` set: those bytes are written to the socket as they are and the
    connection is closed (``b""`` drops it without a word; a status line and a
    Content-Length longer than the body gives an unreadable body). Otherwise
    an HTTP answer with ``status``, ``body`` and an optional Retry-After.
    ``delay_s`` is waited first (cut short when the backend stops).
    ``passthrough``: the request is handled for real, then ``delay_s`` waited
    before its real answer goes out.
    """

    path_prefix: str
    status: int
    remaining: int = 1
    retry_after: str | None = None
    body: str | bytes | None = None
    delay_s: float = 0.0
    raw: bytes | None = None
    passthrough: bool = False


class FaultQueue:
    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        if fault.remaining < 1:
            raise ValueError("times must be at least 1")
        if fault.delay_s < 0:
            raise ValueError("delay_s must not be negative")
        with self._lock:
            self._faults.append(fault)

    def take(self, path: str) -> Fault | None:
        """The first queued fault matching ``path``, used up once."""
        with self._lock:
            for index, fault in enumerate(self._faults):
                if path.startswith(fault.path_prefix):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        del self._faults[index]
                    self._lock.notify_all()
                    return fault
        return None

    def pending(self) -> int:
        with self._lock:
            return sum(fault.remaining for fault in self._faults)

    def wait_taken(self, timeout: float) -> bool:
        """Block until every queued fault has been used (a request is inside it), or timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while any(fault.remaining for fault in self._faults):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
            return True

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
