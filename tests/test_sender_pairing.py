"""The sender and who the device is to the backend: pairing, a backend that forgot the
device, and a backend that refuses the call itself (a config fault, not a loop).

Real backend on loopback, real journal, stepped clock.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sender_support import (
    BASKET,
    PENDING,
    REGISTER,
    Rig,
    basket_event,
    calls,
    pending_event,
    stored_ids,
    warnings_with_code,
)
from structlog.testing import capture_logs

from agent.basket.event import ROUTE_BASKET
from agent.delivery.registration import PAIRING_REMINDER_S
from agent.devserver import ReferenceBackend


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
