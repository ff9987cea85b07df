"""The sender against the real reference backend on loopback and a real journal on disk.

Time is a stepped clock: backoff, Retry-After, pairing retries and the breaker
are walked through with ``step(now)`` instead of waited out. Only the thread
tests (start/stop/wake) use real time, and only for short bounded waits.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sender_support import (
    SteppedClock,
    basket_event,
    free_port,
    make_config,
    pending_event,
)
from structlog.testing import capture_logs

from agent.basket.event import ROUTE_BASKET, ProductEvent
from agent.delivery.backoff import Backoff
from agent.delivery.client import BackendClient
from agent.delivery.identity import IdentityStore
from agent.delivery.journal import Journal
from agent.delivery.registration import PAIRING_REMINDER_S
from agent.delivery.sender import Sender
from agent.devserver import ReferenceBackend

REGISTER = "/api/devices/register"
BASKET = "/api/basket"
PENDING = "/api/pending-items"


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


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[ReferenceBackend]:
    with ReferenceBackend(db_path=tmp_path / "backend.sqlite3") as server:
        yield server


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def make(url: str, state: str = "state", **delivery: Any) -> Rig:
        rig = Rig(tmp_path / state, url, **delivery)
        rigs.append(rig)
        return rig

    yield make
    for rig in reversed(rigs):
        rig.close()


def calls(backend: ReferenceBackend, path: str) -> int:
    return sum(1 for call in backend.calls if call.path == path)


def stored_ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["eventId"] for item in items]


def warnings_with_code(logs: list[dict[str, Any]], code: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["log_level"] == "warning" and entry.get("code") == code]


# -- backend down, registration --------------------------------------------------------------


def test_events_made_while_the_backend_is_down_are_delivered_once_it_is_up(
        tmp_path: Path, make_rig: Callable[..., Rig]) -> None:
    port = free_port()
    rig = make_rig(f"http://127.0.0.1:{port}", backoff_initial_s=1.0, register_backoff_max_s=8.0)
    events = [basket_event(f"P00{n}") for n in range(1, 6)]
    rig.append(*events)
    for _ in range(4):
        due = rig.step()
        assert rig.sender.status().device_id is None
        assert rig.sender.status().blocked == "backend down"
        rig.clock.now = due
    assert rig.pending_ids() == [event.event_id for event in events]

    with ReferenceBackend(db_path=tmp_path / "late.sqlite3", port=port) as backend:
        for _ in range(20):
            if not rig.pending_ids():
                break
            rig.step_at(rig.step())
        assert rig.pending_ids() == []
        assert stored_ids(backend.basket_items()) == [event.event_id for event in events]
        assert calls(backend, REGISTER) == 1
        device_id = rig.sender.status().device_id
        assert backend.basket_items(device_id) and rig.store.load().device_id == device_id


def test_registration_retries_with_capped_full_jitter_backoff(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(f"http://127.0.0.1:{free_port()}", backoff_initial_s=1.0,
                   register_backoff_max_s=8.0, breaker_fail_max=1000)
    rig.append(basket_event())
    shape = Backoff(1.0, 8.0)
    gaps = []
    for failures in range(1, 12):
        now = rig.clock()
        due = rig.step()
        gaps.append(due - now)
        assert 0.0 <= due - now <= shape.ceiling(failures)
        rig.clock.now = due
    assert max(gaps) <= 8.0
    assert len({round(gap, 6) for gap in gaps}) == len(gaps)  # jittered, not a fixed ladder
    assert sum(gaps[6:]) > 8.0  # later attempts are spread over the cap, not bunched at zero
    assert "registration failed" in rig.sender.status().last_error


def test_a_stored_identity_is_reused_on_start(backend: ReferenceBackend,
                                              make_rig: Callable[..., Rig]) -> None:
    first = make_rig(backend.url)
    first.append(basket_event())
    first.step()
    device_id = first.sender.status().device_id
    first.close()

    second = make_rig(backend.url)
    assert second.sender.status().device_id == device_id
    second.append(basket_event())
    second.step()
    assert calls(backend, REGISTER) == 1
    assert len(backend.basket_items(device_id)) == 2


def test_payload_and_idempotency_key_follow_the_contract(backend: ReferenceBackend,
                                                         make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(backend.url)
    basket, pending = basket_event("P003"), pending_event("P004")
    rig.append(basket, pending)
    rig.step()
    backend.pair(rig.sender.status().pairing_code)
    rig.step_at(rig.clock() + rig.config.delivery.not_paired_retry_s)
    [stored_basket] = backend.basket_items()
    [stored_pending] = backend.pending_items()
    assert stored_basket["eventId"] == basket.event_id
    assert stored_basket["productId"] == "P003" and stored_basket["quantity"] == 1
    assert stored_basket["confidence"] == pytest.approx(basket.confidence)
    assert stored_basket["detectedAt"] == basket.detected_at
    assert stored_pending["name"] == "Organic Apples" and stored_pending["eventId"] == pending.event_id
    keys = {call.idempotency_key for call in backend.calls if call.path in (BASKET, PENDING)}
    assert {basket.event_id, pending.event_id} <= keys


# -- pairing -----------------------------------------------------------------------------------


def test_pending_waits_for_pairing_while_basket_events_flow(
        backend: ReferenceBackend, make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(backend.url, not_paired_retry_s=15.0)
    held, b1, b2 = pending_event(), basket_event("P001"), basket_event("P005")
    rig.append(held, b1)
    with capture_logs() as logs:
        due = rig.step()
    code = rig.sender.status().pairing_code
    assert warnings_with_code(logs, code), "the pairing code is logged at WARNING"
    assert stored_ids(backend.basket_items()) == [b1.event_id]
    assert rig.pending_ids() == [held.event_id]
    assert due == pytest.approx(rig.clock() + 15.0)
    assert rig.sender.status().blocked == "not paired"
    assert f"not paired, code {code}" in rig.sender.status_line()

    rig.append(b2)
    rig.step()  # basket route is not held up by the pending route
    assert stored_ids(backend.basket_items()) == [b1.event_id, b2.event_id]
    assert calls(backend, PENDING) == 1

    rig.clock.advance(5.0)
    assert backend.pair(code)
    rig.step_at(due - 0.001)
    assert calls(backend, PENDING) == 1 and rig.pending_ids() == [held.event_id]
    rig.step_at(due)  # within one retry period of pairing
    assert stored_ids(backend.pending_items()) == [held.event_id]
    assert rig.pending_ids() == []
    assert rig.store.load().paired is True
    assert rig.sender.status().paired and "paired" in rig.sender.status_line()
    assert rig.sender.status().blocked == ""


def test_pairing_code_is_repeated_until_paired(backend: ReferenceBackend,
                                               make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(backend.url)
    rig.append(pending_event())
    rig.step()
    code = rig.sender.status().pairing_code
    with capture_logs() as logs:
        rig.step_at(rig.clock() + PAIRING_REMINDER_S - 1)
        assert not warnings_with_code(logs, code)
        rig.step_at(rig.clock() + 1)
        assert len(warnings_with_code(logs, code)) == 1
    backend.pair(code)
    rig.step_at(rig.clock() + rig.config.delivery.not_paired_retry_s)
    assert rig.sender.status().paired
    with capture_logs() as logs:
        rig.step_at(rig.clock() + 10 * PAIRING_REMINDER_S)
    assert not warnings_with_code(logs, code)


# -- a backend that forgot us, and one that refuses the call itself ---------------------------


def test_forgotten_device_registers_again_and_resends_with_the_new_id(
        backend: ReferenceBackend, make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(backend.url)
    rig.append(basket_event())
    rig.step()
    old_id = rig.sender.status().device_id
    backend.forget()
    later = basket_event("P006")
    rig.append(later)
    with capture_logs() as logs:
        for _ in range(5):
            if not rig.pending_ids():
                break
            rig.step_at(rig.step())
    new = rig.sender.status()
    assert new.device_id != old_id
    assert rig.store.load().device_id == new.device_id
    assert stored_ids(backend.basket_items(new.device_id)) == [later.event_id]
    assert warnings_with_code(logs, new.pairing_code)
    assert calls(backend, REGISTER) == 2
    assert not rig.sender.status().last_error


def test_refused_right_after_a_fresh_registration_is_a_config_fault_not_a_loop(
        backend: ReferenceBackend, make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(backend.url, backend={"basket_path": "/api/baskets"})
    rig.append(basket_event(), pending_event())
    with capture_logs() as logs:
        for _ in range(10):
            rig.step_at(rig.clock() + 100.0)
    status = rig.sender.status()
    assert status.last_error.startswith(
        "the backend refuses POST /api/baskets even for a freshly registered device: "
        "check backend.basket_path and backend.url (HTTP 404; basket events stay journaled")
    assert status.blocked == "config fault"
    assert any(entry["log_level"] == "error" and "/api/baskets" in entry["event"] for entry in logs)
    assert calls(backend, "/api/baskets") == 1
    assert calls(backend, REGISTER) == 1
    assert len(rig.pending_ids(ROUTE_BASKET)) == 1  # kept, not dropped
    assert calls(backend, PENDING) >= 2  # the other route goes on (held: not paired)
    assert "config fault" in rig.sender.status_line()
    assert rig.sender.drain(60.0) is False


def test_a_stored_identity_is_replaced_once_before_a_config_fault(
        backend: ReferenceBackend, make_rig: Callable[..., Rig]) -> None:
    good = make_rig(backend.url)
    good.append(basket_event())
    good.step()
    good.close()
    rig = make_rig(backend.url, backend={"basket_path": "/api/baskets"})
    rig.append(basket_event())
    for _ in range(6):
        rig.step_at(rig.clock() + 100.0)
    assert calls(backend, REGISTER) == 2
    assert calls(backend, "/api/baskets") == 2
    assert rig.sender.status().blocked == "config fault"


# -- transient failures, Retry-After, breaker, dead letters -----------------------------------


@pytest.mark.parametrize("status", [503, 429])
def test_retry_after_is_honoured(backend: ReferenceBackend, make_rig: Callable[..., Rig],
                                 status: int) -> None:
    rig = make_rig(backend.url, backoff_initial_s=1.0, backoff_max_s=2.0)
    rig.append(basket_event())
    rig.step()  # registers and delivers the first event
    backend.inject(BASKET, status, retry_after=120)
    event = basket_event()
    rig.append(event)
    start = rig.clock()
    due = rig.step()
    assert due >= start + 120.0
    assert rig.sender.status().blocked == "backend down"
    assert rig.sender.status().last_error == f"backend not answering: HTTP {status}"
    rig.step_at(due - 0.5)
    assert calls(backend, BASKET) == 2 and rig.pending_ids() == [event.event_id]
    rig.step_at(due)
    assert rig.pending_ids() == []


def test_transient_failures_back_off_and_keep_order(backend: ReferenceBackend,
                                                    make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(backend.url, backoff_initial_s=1.0, backoff_max_s=4.0, breaker_fail_max=100)
    first, second = basket_event("P001"), basket_event("P002")
    rig.append(first, second)
    backend.inject(BASKET, 500, times=4)
    shape = Backoff(1.0, 4.0)
    for failures in range(1, 5):
        now = rig.clock()
        due = rig.step()
        assert now <= due <= now + shape.ceiling(failures)
        assert rig.pending_ids() == [first.event_id, second.event_id]
        rig.clock.now = due
    rig.step()
    assert stored_ids(backend.basket_items()) == [first.event_id, second.event_id]


def test_an_open_breaker_stops_sending_until_it_may_half_open(
        backend: ReferenceBackend, make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(backend.url, backoff_initial_s=0.01, backoff_max_s=0.02,
                   breaker_fail_max=3, breaker_reset_s=30.0)
    rig.append(basket_event())
    rig.step()
    backend.inject(BASKET, 502, times=3)
    event = basket_event()
    rig.append(event)
    due = rig.step()
    for _ in range(3):
        due = rig.step_at(due)
    assert rig.client.breaker_state == "open"
    assert "breaker open" in rig.sender.status_line()
    sent = calls(backend, BASKET)
    for _ in range(5):
        rig.clock.advance(5.0)
        rig.step()
    assert calls(backend, BASKET) == sent, "no request while the breaker is open"
    rig.step_at(due + 30.0)
    assert rig.pending_ids() == []
    assert rig.client.breaker_state == "closed"
    assert "backend ok" in rig.sender.status_line()


def test_other_4xx_goes_to_dead_letters_then_requeue_delivers_it(
        backend: ReferenceBackend, make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(backend.url)
    refused, after = basket_event("P001"), basket_event("P002")
    backend.inject(BASKET, 422, body='{"error": "unknown productId P001"}')
    rig.append(refused, after)
    rig.step()
    assert stored_ids(backend.basket_items()) == [after.event_id]
    [letter] = rig.journal.dead_letters()
    assert letter.event_id == refused.event_id and letter.status == 422
    assert "unknown productId" in letter.body and letter.reason == "refused"
    assert "1 dead letters" in rig.sender.status_line()
    assert rig.journal.requeue([refused.event_id]) == 1
    rig.step()
    assert stored_ids(backend.basket_items()) == [after.event_id, refused.event_id]
    assert rig.journal.dead_letters() == []


# -- drain -------------------------------------------------------------------------------------


def test_drain_delivers_everything_and_says_true(backend: ReferenceBackend,
                                                 make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(backend.url)
    count = 101  # one more than a round's batch
    rig.append(*[basket_event() for _ in range(count)])
    assert rig.sender.drain(60.0) is True
    assert len(backend.basket_items()) == count


def test_drain_gives_up_at_its_timeout_without_sleeping(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(f"http://127.0.0.1:{free_port()}", backoff_initial_s=0.5)
    rig.append(basket_event())
    wall = time.monotonic()
    start = rig.clock()
    assert rig.sender.drain(20.0) is False
    assert rig.clock() - start <= 20.0 + 1e-6
    assert rig.clock.waits, "drain waited through the injected wait"
    assert time.monotonic() - wall < 5.0
    assert rig.sender.status().blocked == "backend down"


def test_drain_stops_early_when_not_paired_beyond_the_deadline(
        backend: ReferenceBackend, make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(backend.url, not_paired_retry_s=60.0)
    rig.append(pending_event(), basket_event())
    start = rig.clock()
    assert rig.sender.drain(10.0) is False
    assert rig.clock() == start  # nothing could change before the deadline: no waiting
    assert rig.sender.status().blocked == "not paired"
    assert len(backend.basket_items()) == 1


def test_drain_after_stop_returns_at_once(backend: ReferenceBackend,
                                          make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(backend.url)
    rig.append(basket_event())
    rig.sender.stop(1.0)
    started = rig.clock()
    assert rig.sender.drain(30.0) is False
    assert rig.clock() == started and backend.calls == []



@pytest.mark.parametrize("status", [401, 403, 410])
def test_every_device_unknown_answer_leads_to_one_new_registration(
        backend: ReferenceBackend, make_rig: Callable[..., Rig], status: int) -> None:
    rig = make_rig(backend.url)
    rig.append(basket_event())
    rig.step()
    old_id = rig.sender.status().device_id
    backend.inject(BASKET, status)
    event = basket_event()
    rig.append(event)
    for _ in range(3):
        rig.step_at(rig.step())
    assert rig.pending_ids() == []
    assert calls(backend, REGISTER) == 2
    new_id = rig.sender.status().device_id
    assert new_id != old_id
    assert stored_ids(backend.basket_items(new_id)) == [event.event_id]


def test_sender_thread_yields_the_cpu_to_detection(
        make_rig: Callable[..., Rig], backend: ReferenceBackend) -> None:
    from agent.delivery.sender import SENDER_NICE

    rig = make_rig(backend.url)
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    rig.sender.start()
    thread = rig.sender._thread
    assert thread is not None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and thread.native_id is None:
        time.sleep(0.01)
    niceness = None
    while time.monotonic() < deadline:
        niceness = os.getpriority(os.PRIO_PROCESS, thread.native_id)
        if niceness != base:
            break
        time.sleep(0.01)
    assert niceness == min(19, base + SENDER_NICE)
    # The caller's own thread keeps its priority.
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base
