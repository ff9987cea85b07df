"""The sender when the backend fails: transient answers back off in order, Retry-After is
a floor, an open breaker stops all sending, other 4xx go to the dead letters.

Real backend on loopback, real journal, stepped clock.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sender_support import (
    BASKET,
    REGISTER,
    Rig,
    basket_event,
    calls,
    free_port,
    stored_ids,
)

from agent.delivery.backoff import Backoff
from agent.devserver import ReferenceBackend


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


def test_status_line_says_backend_down_while_registration_is_refused_a_connection(
        tmp_path: Path, make_rig: Callable[..., Rig]) -> None:
    port = free_port()
    rig = make_rig(f"http://127.0.0.1:{port}", breaker_fail_max=100, backoff_initial_s=0.01,
                   register_backoff_max_s=0.02)
    rig.append(basket_event())
    due = rig.step()
    line = rig.sender.status_line()
    assert "not registered" in line and "backend down" in line and "backend ok" not in line
    assert rig.client.breaker_state == "closed"
    with ReferenceBackend(db_path=tmp_path / "b.sqlite3", port=port):
        rig.step_at(due)
        line = rig.sender.status_line()
    assert rig.pending_ids() == []
    assert "not paired, code" in line and line.endswith("backend ok")


def test_status_line_says_a_registration_was_refused(
        backend: ReferenceBackend, make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(backend.url)
    backend.inject(REGISTER, 403)
    rig.append(basket_event())
    rig.step()
    line = rig.sender.status_line()
    assert line == ("journal 1 pending; not registered; registration refused: HTTP 403, "
                    "check backend.register_path")


# A stalled answer: the backend stores the event but answers only after STALL_S, well inside
# the client's own read timeout. Were a drain's calls not capped by its deadline, the answer
# would arrive and the event be delivered; capped, the call times out and the event stays.
STALL_S = 50.0
SLOW_BACKEND = {"connect_timeout_s": 60.0, "read_timeout_s": 60.0}


def test_a_drain_caps_each_call_by_the_time_it_has_left(
        backend: ReferenceBackend, make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(backend.url, backend=SLOW_BACKEND)
    rig.append(basket_event())
    backend.inject(BASKET, delay_s=STALL_S, passthrough=True)
    assert rig.sender.drain(0.3) is False
    assert rig.pending_ids() != []
    assert "read timed out" in rig.sender.status().last_error
    assert calls(backend, BASKET) == 1


def test_a_drain_caps_a_registration_by_the_time_it_has_left(
        backend: ReferenceBackend, make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(backend.url, backend=SLOW_BACKEND)
    rig.append(basket_event())
    backend.inject(REGISTER, delay_s=STALL_S, passthrough=True)
    assert rig.sender.drain(0.3) is False
    assert rig.sender.status().device_id is None
    assert "read timed out" in rig.sender.status().last_error


def test_a_drain_with_no_time_left_starts_no_call(
        backend: ReferenceBackend, make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(backend.url)
    rig.append(basket_event())
    assert rig.sender.drain(0.0) is False
    assert backend.calls == []
    assert rig.sender.status().last_error == ""  # running out of time is no backend failure
    rig.step()  # outside a drain nothing is capped
    assert rig.pending_ids() == []


def test_the_sender_counts_its_deliveries_and_refusals(
        backend: ReferenceBackend, make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(backend.url)
    backend.inject(BASKET, 422)
    rig.append(basket_event(), basket_event(), basket_event())
    rig.step()
    assert (rig.sender.delivered, rig.sender.refused) == (2, 1)
