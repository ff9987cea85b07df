"""Every row of the backend contract's send table through the client, against the reference
backend on loopback: what each answer (or no answer) counts as, and whether it trips the breaker.
"""

from __future__ import annotations

import pytest
from sender_support import item, make_client, registered

from agent.basket.event import ROUTE_BASKET, ROUTE_PENDING
from agent.delivery.client import (
    DELIVERED,
    MAX_BODY_BYTES,
    NOT_PAIRED,
    REFUSED,
    TRANSIENT,
    UNKNOWN_DEVICE,
    BackendClient,
    Outcome,
)
from agent.devserver import ReferenceBackend

# -- send: the contract table ---------------------------------------------------------------

def test_2xx_is_delivered_and_carries_the_idempotency_key(backend: ReferenceBackend,
                                                         client: BackendClient) -> None:
    device = registered(client).device_id
    assert device is not None
    outcome = client.send(ROUTE_BASKET, item(device), "0193a4c2-0001")
    assert outcome == Outcome(DELIVERED, 201)
    assert outcome.delivered
    # A repeat is a 200 from an idempotent backend: still delivered, stored once.
    assert client.send(ROUTE_BASKET, item(device), "0193a4c2-0001").kind is DELIVERED
    assert len(backend.basket_items(device)) == 1
    keys = [call.idempotency_key for call in backend.calls if call.path == "/api/basket"]
    assert keys == ["0193a4c2-0001", "0193a4c2-0001"]


@pytest.mark.parametrize("route", [ROUTE_BASKET, ROUTE_PENDING])
@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_408_429_5xx_are_transient_and_breaker_failures(
        backend: ReferenceBackend, client: BackendClient, route: str, status: int) -> None:
    prefix = "/api/basket" if route == ROUTE_BASKET else "/api/pending-items"
    backend.inject(prefix, status, body="try later")
    outcome = client.send(route, item("dev"), "e1")
    assert outcome.kind is TRANSIENT and outcome.status == status
    assert outcome.body_start == "try later"
    assert client.breaker.fail_count == 1


def test_400_on_pending_means_not_paired_until_the_device_is_paired(
        backend: ReferenceBackend, client: BackendClient) -> None:
    result = registered(client)
    assert result.device_id is not None and result.code is not None
    outcome = client.send(ROUTE_PENDING, item(result.device_id), "e1")
    assert outcome.kind is NOT_PAIRED and outcome.status == 400
    assert client.breaker.fail_count == 0
    assert backend.pair(result.code)
    assert client.send(ROUTE_PENDING, item(result.device_id), "e1").kind is DELIVERED
    [stored] = backend.pending_items(result.device_id)
    assert stored["name"] == "Organic Apples"


def test_400_on_basket_is_refused_not_not_paired(backend: ReferenceBackend,
                                                 client: BackendClient) -> None:
    backend.inject("/api/basket", 400, body='{"error": "bad"}')
    outcome = client.send(ROUTE_BASKET, item("dev"), "e1")
    assert outcome.kind is REFUSED and outcome.status == 400
    assert outcome.body_start == '{"error": "bad"}'


def test_a_forgotten_device_is_unknown(backend: ReferenceBackend, client: BackendClient) -> None:
    device = registered(client).device_id
    assert device is not None
    backend.forget()
    for route in (ROUTE_BASKET, ROUTE_PENDING):
        outcome = client.send(route, item(device), "e1")
        assert outcome.kind is UNKNOWN_DEVICE and outcome.status == 404
    assert client.breaker.fail_count == 0


@pytest.mark.parametrize("status", [401, 403, 410])
def test_401_403_410_are_unknown_device(backend: ReferenceBackend, client: BackendClient,
                                        status: int) -> None:
    backend.inject("/api/", status)
    outcome = client.send(ROUTE_PENDING, item("dev"), "e1")
    assert outcome.kind is UNKNOWN_DEVICE and outcome.status == status


def test_other_4xx_is_refused_with_the_start_of_the_body(backend: ReferenceBackend,
                                                         client: BackendClient) -> None:
    device = registered(client).device_id
    assert device is not None
    outcome = client.send(ROUTE_BASKET, item(device, quantity=0), "e1")
    assert outcome.kind is REFUSED and outcome.status == 422
    assert "quantity must be a whole number" in outcome.body_start
    backend.inject("/api/basket", 409, body="x" * 5000)
    long = client.send(ROUTE_BASKET, item(device), "e2")
    assert long.kind is REFUSED and long.status == 409 and long.body_start == "x" * 200
    assert client.breaker.fail_count == 0


def test_read_timeout_is_transient(backend: ReferenceBackend) -> None:
    backend.inject("/api/basket", 201, delay_s=30.0)
    with make_client(backend, read_timeout_s=0.2) as client:
        outcome = client.send(ROUTE_BASKET, item("dev"), "e1")
    assert outcome.kind is TRANSIENT and outcome.status is None
    assert "timed out" in outcome.error


def test_refused_connection_is_transient(backend: ReferenceBackend, client: BackendClient) -> None:
    backend.stop()
    outcome = client.send(ROUTE_BASKET, item("dev"), "e1")
    assert outcome.kind is TRANSIENT and outcome.error == "connection refused"
    assert client.breaker.fail_count == 1


def test_dropped_connection_is_transient(backend: ReferenceBackend, client: BackendClient) -> None:
    backend.inject("/api/basket", raw=b"")
    outcome = client.send(ROUTE_BASKET, item("dev"), "e1")
    assert outcome.kind is TRANSIENT and outcome.status is None
    assert outcome.error == "connection closed without an answer"


def test_reset_connection_is_transient(backend: ReferenceBackend, client: BackendClient) -> None:
    # Half a status line, then the socket closes.
    backend.inject("/api/pending-items", raw=b"HTTP/1.1 2")
    outcome = client.send(ROUTE_PENDING, item("dev"), "e1")
    assert outcome.kind is TRANSIENT and outcome.status is None


def test_2xx_with_a_cut_off_body_on_send_is_transient(backend: ReferenceBackend,
                                                      client: BackendClient) -> None:
    backend.inject("/api/basket", raw=b"HTTP/1.1 201 Created\r\nContent-Length: 40\r\n\r\n{")
    outcome = client.send(ROUTE_BASKET, item("dev"), "e1")
    assert outcome.kind is TRANSIENT and "unreadable" in outcome.error


def test_redirect_is_not_followed_and_stays_transient(backend: ReferenceBackend,
                                                      client: BackendClient) -> None:
    backend.inject("/api/basket", 302, body="")
    outcome = client.send(ROUTE_BASKET, item("dev"), "e1")
    assert outcome.kind is TRANSIENT and outcome.status == 302
    assert "check backend.url" in outcome.error
    assert [call.path for call in backend.calls] == ["/api/basket"]


def test_oversized_answers_are_read_only_up_to_the_cap(backend: ReferenceBackend,
                                                      client: BackendClient) -> None:
    device = registered(client).device_id
    assert device is not None
    huge = "y" * (MAX_BODY_BYTES * 4)
    backend.inject("/api/basket", 201, body=huge)
    assert client.send(ROUTE_BASKET, item(device), "e1").kind is DELIVERED
    backend.inject("/api/basket", 409, body=huge)
    refused = client.send(ROUTE_BASKET, item(device), "e2")
    assert refused.kind is REFUSED and refused.body_start == "y" * 200
    # A register answer cut at the cap is no longer JSON: transient.
    backend.inject("/api/devices/register", 201,
                   body='{"deviceId": "d", "code": "1234", "pad": "' + huge + '"}')
    assert client.register().outcome.kind is TRANSIENT
    # The client carries on with a fresh connection.
    assert client.send(ROUTE_BASKET, item(device, "e3"), "e3").kind is DELIVERED


def test_unknown_route_is_a_programming_error(client: BackendClient) -> None:
    with pytest.raises(ValueError):
        client.send("elsewhere", {}, "e1")
