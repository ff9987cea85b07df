"""Every row of the backend contract through the client, against the reference backend on loopback."""

from __future__ import annotations

import email.utils
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from structlog.testing import capture_logs

from agent import __version__
from agent.basket.event import ROUTE_BASKET, ROUTE_PENDING, ProductEvent
from agent.config import BackendConfig, DeliveryConfig
from agent.delivery.client import (
    BREAKER_OPEN,
    DELIVERED,
    MAX_BODY_BYTES,
    NOT_PAIRED,
    REFUSED,
    TRANSIENT,
    UNKNOWN_DEVICE,
    BackendClient,
    Outcome,
    Registration,
    event_payload,
    parse_retry_after,
    redact_url,
)
from agent.devserver import ReferenceBackend

WALL_NOW = 1_796_400_000.0  # 2026-12-04T16:00:00Z


class FakeClock:
    def __init__(self, now: float = 500.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def backend() -> Iterator[ReferenceBackend]:
    with ReferenceBackend() as server:
        yield server


def make_client(backend: ReferenceBackend, *, fail_max: int = 5, reset_s: float = 30.0,
                clock: FakeClock | None = None, read_timeout_s: float = 5.0,
                session: requests.Session | None = None, url: str | None = None) -> BackendClient:
    config = BackendConfig(url=url or backend.url, connect_timeout_s=2.0,
                           read_timeout_s=read_timeout_s)
    delivery = DeliveryConfig(breaker_fail_max=fail_max, breaker_reset_s=reset_s)
    return BackendClient(config, delivery, session=session, clock=clock or FakeClock(),
                         wall_clock=lambda: WALL_NOW)


@pytest.fixture
def client(backend: ReferenceBackend) -> Iterator[BackendClient]:
    with make_client(backend) as made:
        yield made


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


# -- register ------------------------------------------------------------------------------

def test_register_returns_device_id_and_code_and_sends_agent_version(
        backend: ReferenceBackend, client: BackendClient) -> None:
    result = registered(client)
    assert result.outcome.kind is DELIVERED and result.outcome.status == 201
    assert result.code is not None and len(result.code) == 4 and result.code.isdigit()
    [device] = backend.devices()
    assert device["deviceId"] == result.device_id
    assert device["agentVersion"] == __version__
    identity = result.identity(backend.url, "2026-12-04T10:00:00.000Z")
    assert (identity.device_id, identity.code, identity.paired) == (result.device_id,
                                                                    result.code, False)


@pytest.mark.parametrize("body", [
    "not json at all",
    '{"deviceId": "abc"}',
    '{"deviceId": "abc", "code": "12345"}',
    '{"deviceId": 7, "code": "1234"}',
    '{"deviceId": "", "code": "1234"}',
    '["abc", "1234"]',
])
def test_register_2xx_without_a_usable_body_is_transient_and_a_breaker_failure(
        backend: ReferenceBackend, client: BackendClient, body: str) -> None:
    backend.inject("/api/devices/register", 200, body=body)
    result = client.register()
    assert not result.ok
    assert result.outcome.kind is TRANSIENT and result.outcome.status == 200
    assert client.breaker.fail_count == 1
    with pytest.raises(ValueError):
        result.identity(backend.url, "t")


def test_register_2xx_cut_off_mid_body_is_transient(backend: ReferenceBackend,
                                                    client: BackendClient) -> None:
    backend.inject("/api/devices/register",
                   raw=b'HTTP/1.1 201 Created\r\nContent-Length: 60\r\n\r\n{"deviceId": "ab')
    result = client.register()
    assert result.outcome.kind is TRANSIENT and result.outcome.status is None
    assert "unreadable" in result.outcome.error
    assert client.breaker.fail_count == 1


@pytest.mark.parametrize("status", [404, 400, 401, 422])
def test_register_refused_by_a_4xx_is_refused_not_a_breaker_failure(
        backend: ReferenceBackend, client: BackendClient, status: int) -> None:
    backend.inject("/api/devices/register", status, body="no such route here")
    result = client.register()
    assert result.outcome.kind is REFUSED and result.outcome.status == status
    assert result.outcome.body_start == "no such route here"
    assert client.breaker.fail_count == 0


def test_register_against_a_wrong_path_is_refused(backend: ReferenceBackend) -> None:
    config = BackendConfig(url=backend.url, register_path="/api/devices/enrol")
    with BackendClient(config, DeliveryConfig(), clock=FakeClock()) as client:
        result = client.register()
    assert result.outcome.kind is REFUSED and result.outcome.status == 404


# -- send: the contract table --------------------------------------------------------------

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


# -- Retry-After -----------------------------------------------------------------------------

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


# -- health, session, logs -------------------------------------------------------------------

def test_health_is_true_when_up_and_false_when_down_or_failing(backend: ReferenceBackend,
                                                              client: BackendClient) -> None:
    assert client.health() is True
    backend.inject("/health", 503)
    assert client.health() is False
    backend.stop()
    assert client.health() is False
    # A probe is not traffic: it never counts for the breaker.
    assert client.breaker.fail_count == 0


def test_one_keep_alive_connection_serves_many_calls(backend: ReferenceBackend,
                                                     client: BackendClient) -> None:
    device = registered(client).device_id
    assert device is not None
    for n in range(5):
        assert client.send(ROUTE_BASKET, item(device, f"e{n}"), f"e{n}").kind is DELIVERED
    assert client.health()
    assert backend.connections == 1


def test_a_passed_session_is_used_and_left_open(backend: ReferenceBackend) -> None:
    session = requests.Session()
    try:
        client = make_client(backend, session=session)
        assert client.session is session
        client.close()
        # Still usable: the caller owns it.
        assert session.get(backend.url + "/health", timeout=5).status_code == 200
    finally:
        session.close()


def test_logs_never_carry_credentials_or_payloads(backend: ReferenceBackend) -> None:
    url = backend.url.replace("http://", "http://agent:s3cret-token@")
    with make_client(backend, url=url) as client, capture_logs() as logs:
        backend.inject("/api/basket", 503)
        client.send(ROUTE_BASKET, item("dev", productId="P-private"), "e1")
        backend.stop()
        client.health()
    text = repr(logs)
    assert logs, "the transient answer and the failed probe are logged"
    assert "s3cret-token" not in text and "P-private" not in text


def test_redact_url() -> None:
    assert redact_url("http://user:pw@host:3000/x") == "http://host:3000/x"
    assert redact_url("https://host/") == "https://host/"


def test_event_payload_follows_the_contract_per_route() -> None:
    event = ProductEvent("e1", ROUTE_BASKET, "P001", "Organic Apples", 2, 0.92,
                         "2026-12-04T10:00:00.123Z")
    assert event_payload(event, "dev") == {
        "productId": "P001", "quantity": 2, "confidence": 0.92, "deviceId": "dev",
        "eventId": "e1", "detectedAt": "2026-12-04T10:00:00.123Z"}
    pending = ProductEvent("e2", ROUTE_PENDING, "P001", "Organic Apples", 1, 0.65,
                           "2026-12-04T10:00:00.123Z")
    assert event_payload(pending, "dev")["name"] == "Organic Apples"
