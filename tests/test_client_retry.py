"""Retry-After (seconds and HTTP dates, capped) and the circuit breaker, through the client
against the reference backend on loopback; the breaker runs on a fake monotonic clock.
"""

from __future__ import annotations

import email.utils

import pytest
from sender_support import WALL_NOW, FakeClock, item, make_client, registered

from agent.basket.event import ROUTE_BASKET, ROUTE_PENDING
from agent.delivery.client import (
    BREAKER_OPEN,
    DELIVERED,
    NOT_PAIRED,
    REFUSED,
    TRANSIENT,
    UNKNOWN_DEVICE,
    BackendClient,
    parse_retry_after,
)
from agent.devserver import ReferenceBackend

# -- Retry-After ----------------------------------------------------------------------------

def test_retry_after_in_seconds(backend: ReferenceBackend, client: BackendClient) -> None:
    backend.inject("/api/basket", 429, retry_after=7)
    assert client.send(ROUTE_BASKET, item("dev"), "e1").retry_after_s == 7.0


def test_retry_after_as_an_http_date(backend: ReferenceBackend, client: BackendClient) -> None:
    backend.inject("/api/basket", 503, retry_after=email.utils.formatdate(WALL_NOW + 90,
                                                                          usegmt=True))
    outcome = client.send(ROUTE_BASKET, item("dev"), "e1")
    assert outcome.kind is TRANSIENT and outcome.retry_after_s == pytest.approx(90.0)


def test_retry_after_on_a_refused_answer_is_still_reported(backend: ReferenceBackend,
                                                           client: BackendClient) -> None:
    backend.inject("/api/pending-items", 400, retry_after=15)
    outcome = client.send(ROUTE_PENDING, item("dev"), "e1")
    assert outcome.kind is NOT_PAIRED and outcome.retry_after_s == 15.0


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), ("", None), ("  ", None), ("12", 12.0), (" 3 ", 3.0), ("1.5", 1.5),
    ("-4", None), ("nan", None), ("inf", None), ("soon", None),
    ("Fri, 04 Dec 2026 16:02:00 GMT", 120.0), ("Friday, 04-Dec-26 16:00:30 GMT", 30.0),
    ("Fri, 04 Dec 2026 16:00:30 +0000", 30.0),
    ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
    ("99999999", 86400.0), ("Fri, 01 Jan 2100 00:00:00 GMT", 86400.0),
])
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    result = parse_retry_after(value, WALL_NOW)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


# -- the breaker through the client ---------------------------------------------------------

def test_breaker_opens_refuses_without_network_then_half_opens_and_closes(
        backend: ReferenceBackend) -> None:
    clock = FakeClock()
    with make_client(backend, fail_max=2, reset_s=30.0, clock=clock) as client:
        device = registered(client).device_id
        assert device is not None
        backend.inject("/api/basket", 503, times=2)
        assert client.send(ROUTE_BASKET, item(device), "e1").kind is TRANSIENT
        assert client.breaker_state == "closed"
        assert client.send(ROUTE_BASKET, item(device), "e1").kind is TRANSIENT
        assert client.breaker_state == "open"
        before = len(backend.calls)
        clock.now += 10.0
        refused = client.send(ROUTE_BASKET, item(device), "e1")
        assert refused.kind is BREAKER_OPEN and refused.status is None
        assert refused.retry_after_s == pytest.approx(20.0)
        # Register shares the breaker.
        assert client.register().outcome.kind is BREAKER_OPEN
        assert len(backend.calls) == before
        clock.now += 20.0
        assert client.breaker_state == "half-open"
        assert client.send(ROUTE_BASKET, item(device), "e1").kind is DELIVERED
        assert client.breaker_state == "closed"
        assert len(backend.basket_items(device)) == 1


def test_failed_half_open_trial_reopens(backend: ReferenceBackend) -> None:
    clock = FakeClock()
    with make_client(backend, fail_max=1, reset_s=5.0, clock=clock) as client:
        backend.inject("/api/basket", 500, times=2)
        assert client.send(ROUTE_BASKET, item("dev"), "e1").kind is TRANSIENT
        clock.now += 5.0
        assert client.breaker_state == "half-open"
        trial = client.send(ROUTE_BASKET, item("dev"), "e1")
        assert trial.kind is TRANSIENT and trial.status == 500
        assert client.breaker_state == "open"


def test_4xx_answers_do_not_trip_the_breaker(backend: ReferenceBackend) -> None:
    with make_client(backend, fail_max=1) as client:
        backend.inject("/api/basket", 422, times=3)
        for _ in range(3):
            assert client.send(ROUTE_BASKET, item("dev"), "e1").kind is REFUSED
        assert client.send(ROUTE_PENDING, item("dev"), "e1").kind is UNKNOWN_DEVICE
        assert client.breaker_state == "closed"
