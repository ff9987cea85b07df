"""The sender against the real reference backend on loopback and a real journal on disk:
a backend that is down, registration, the payload, drain.

Time is a stepped clock: backoff and retries are walked through with
``step(now)`` instead of waited out. The sender's own thread is in
test_sender_thread.py; pairing and device identity in test_sender_pairing.py;
transient failures, Retry-After, the breaker and dead letters in test_sender_faults.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sender_support import (
    BASKET,
    PENDING,
    REGISTER,
    Rig,
    basket_event,
    calls,
    free_port,
    pending_event,
    stored_ids,
)

from agent.delivery.backoff import Backoff
from agent.devserver import ReferenceBackend


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
    start = rig.clock()
    assert rig.sender.drain(20.0) is False
    assert rig.clock.waits, "drain waited through the injected wait"
    # Its time passed only in those waits (the stepped clock moves nowhere else), within the timeout.
    assert rig.clock() - start == pytest.approx(sum(rig.clock.waits))
    assert rig.clock() - start <= 20.0 + 1e-6
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
