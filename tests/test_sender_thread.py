"""The sender's thread in real time: wake, stop while the backend hangs, failing rounds, drain beside it.

Waits here are bounded polls of a real thread's progress; no timer is waited out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sender_support import basket_event, make_config, wait_until
from structlog.testing import capture_logs

from agent.config import Config
from agent.delivery.client import BackendClient
from agent.delivery.identity import IdentityStore
from agent.delivery.journal import Journal
from agent.delivery.live_status import live_status_path, read_live_status
from agent.delivery.sender import Sender
from agent.devserver import ReferenceBackend

BASKET = "/api/basket"


class Parts:
    """Real journal, client and identity store for one state dir; senders built on them."""

    def __init__(self, state_dir: Path, url: str, **delivery: Any) -> None:
        self.config: Config = make_config(state_dir, url, **delivery)
        self.journal = Journal.open(self.config.state_dir, self.config.journal)
        self.client = BackendClient(self.config.backend, self.config.delivery)
        self.senders: list[Sender] = []

    def sender(self, journal: Any = None, **kwargs: Any) -> Sender:
        sender = Sender(journal or self.journal, self.client, IdentityStore(self.config.state_dir),
                        self.config, **kwargs)
        self.senders.append(sender)
        return sender

    def close(self) -> None:
        for sender in self.senders:
            sender.stop(2.0)
        self.client.close()
        self.journal.close()


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[ReferenceBackend]:
    with ReferenceBackend(db_path=tmp_path / "backend.sqlite3") as server:
        yield server


@pytest.fixture
def make_parts(tmp_path: Path, backend: ReferenceBackend) -> Iterator[Callable[..., Parts]]:
    made: list[Parts] = []

    def make(**delivery: Any) -> Parts:
        parts = Parts(tmp_path / "state", backend.url, **delivery)
        made.append(parts)
        return parts

    yield make
    for parts in made:
        parts.close()


def test_the_thread_delivers_what_wake_announces_and_publishes_its_state(
        backend: ReferenceBackend, make_parts: Callable[..., Parts]) -> None:
    parts = make_parts()
    sender = parts.sender()
    sender.start()
    for _ in range(3):
        parts.journal.append(basket_event())
        started = time.monotonic()
        sender.wake()
        assert time.monotonic() - started < 0.05
    assert wait_until(lambda: parts.journal.stats().pending == 0)
    assert len(backend.basket_items()) == 3
    live_path = live_status_path(parts.config.state_dir)
    assert wait_until(lambda: read_live_status(live_path) is not None)
    live = read_live_status(live_path)
    assert live is not None
    assert live["breaker"] == "closed" and live["deviceId"] == sender.status().device_id
    sender.stop(2.0)
    assert read_live_status(live_path) is None  # marked stopped


def test_stop_returns_promptly_while_the_backend_hangs(
        backend: ReferenceBackend, make_parts: Callable[..., Parts]) -> None:
    parts = make_parts(backend={"read_timeout_s": 20.0, "connect_timeout_s": 2.0})
    sender = parts.sender()
    event = basket_event()
    try:
        backend.inject(BASKET, 503, delay_s=15.0)
        parts.journal.append(event)
        sender.start()
        assert wait_until(lambda: backend.faults.pending() == 0), "request in flight"
        started = time.monotonic()
        line = sender.status_line()  # what the frame loop asks for: never waits on the network
        assert time.monotonic() - started < 0.2 and line.startswith("journal 1 pending")
        started = time.monotonic()
        sender.stop(0.5)
        assert time.monotonic() - started < 1.5
        assert [entry.event.event_id for entry in parts.journal.pending()] == [event.event_id]
    finally:
        backend.stop()  # cuts the hanging answer short


def test_the_thread_survives_a_failing_round_and_an_unwritable_status_file(
        make_parts: Callable[..., Parts], tmp_path: Path) -> None:
    parts = make_parts(backoff_initial_s=0.02)
    sender = parts.sender(live_status=tmp_path / "no-such-dir" / "status.json")
    parts.journal.close()  # every round now fails on the journal
    with capture_logs() as logs:
        sender.start()
        assert wait_until(lambda: sum("delivery round failed" in entry["event"]
                                      for entry in list(logs)) >= 3)
        assert any("cannot write the delivery status file" in entry["event"]
                   for entry in list(logs))


class FailsOnce:
    """The real journal, except that its first ``pending`` call hits a bug."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self.failed = False

    def pending(self, route: str | None = None, limit: int = 100) -> list[Any]:
        if not self.failed:
            self.failed = True
            raise RuntimeError("a bug in a delivery round")
        return self._journal.pending(route, limit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._journal, name)


def test_the_thread_outlives_an_unexpected_error(make_parts: Callable[..., Parts]) -> None:
    parts = make_parts(backoff_initial_s=0.01, backoff_max_s=0.05)
    flaky = FailsOnce(parts.journal)
    sender = parts.sender(journal=flaky)
    parts.journal.append(basket_event())
    with capture_logs() as logs:
        sender.start()
        assert wait_until(lambda: parts.journal.stats().pending == 0)
    assert flaky.failed
    assert any(entry["log_level"] == "error" and "unexpectedly" in entry["event"]
               for entry in logs)


def test_drain_while_the_thread_runs(backend: ReferenceBackend,
                                     make_parts: Callable[..., Parts]) -> None:
    parts = make_parts()
    sender = parts.sender()
    sender.start()
    for _ in range(30):
        parts.journal.append(basket_event())  # no wake(): drain must not depend on the thread
    assert sender.drain(10.0) is True
    assert len(backend.basket_items()) == 30
    keys = [call.idempotency_key for call in backend.calls if call.path == BASKET]
    assert len(keys) == len(set(keys)) == 30  # the thread and drain never sent one twice
