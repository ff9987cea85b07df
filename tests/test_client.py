"""The backend client against the reference backend on loopback: registration, the health
probe, the session, what is logged, the payload. Each send answer of the contract is in
test_client_answers.py; Retry-After and the breaker in test_client_retry.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from sender_support import FakeClock, item, make_client, registered
from structlog.testing import capture_logs

from agent import __version__
from agent.basket.event import ROUTE_BASKET, ROUTE_PENDING, ProductEvent
from agent.config import BackendConfig, DeliveryConfig, JournalConfig
from agent.delivery.client import (
    DELIVERED,
    REFUSED,
    TRANSIENT,
    BackendClient,
    event_payload,
)
from agent.delivery.journal import Journal
from agent.devserver import ReferenceBackend

# -- register -------------------------------------------------------------------------------

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


# -- health, session, logs, payload ---------------------------------------------------------

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


def test_event_payload_follows_the_contract_per_route() -> None:
    event = ProductEvent("e1", ROUTE_BASKET, "P001", "Organic Apples", 2, 0.92,
                         "2026-12-04T10:00:00.123Z")
    assert event_payload(event, "dev") == {
        "productId": "P001", "quantity": 2, "confidence": 0.92, "deviceId": "dev",
        "eventId": "e1", "detectedAt": "2026-12-04T10:00:00.123Z"}
    pending = ProductEvent("e2", ROUTE_PENDING, "P001", "Organic Apples", 1, 0.65,
                           "2026-12-04T10:00:00.123Z")
    assert event_payload(pending, "dev")["name"] == "Organic Apples"


def test_event_payload_marks_an_unsynchronised_clock_only() -> None:
    synced = ProductEvent("e1", ROUTE_BASKET, "P001", "Organic Apples", 1, 0.92,
                          "2026-12-04T10:00:00.123Z")
    unsynced = ProductEvent("e2", ROUTE_PENDING, "P001", "Organic Apples", 1, 0.65,
                            "1970-01-01T00:01:00.000Z", clock_synced=False)
    assert "clockSynced" not in event_payload(synced, "dev")
    body = event_payload(unsynced, "dev")
    assert body["clockSynced"] is False
    assert {key: value for key, value in body.items() if key != "clockSynced"} == {
        "productId": "P001", "quantity": 1, "confidence": 0.65, "deviceId": "dev",
        "eventId": "e2", "detectedAt": "1970-01-01T00:01:00.000Z", "name": "Organic Apples"}


def test_a_journaled_unsynchronised_event_is_sent_marked_and_accepted(
        tmp_path: Path, backend: ReferenceBackend) -> None:
    event = ProductEvent("0193a4c2-0009", ROUTE_BASKET, "P001", "Organic Apples", 1, 0.92,
                         "1970-01-01T00:01:00.000Z", clock_synced=False)
    with Journal.open(tmp_path, JournalConfig()) as journal:
        journal.append(event)
        [entry] = journal.pending()
    body = event_payload(entry.event, "dev")
    assert body["clockSynced"] is False  # the mark survives the journal
    with make_client(backend) as client:
        device = registered(client).device_id
        assert client.send(ROUTE_BASKET, event_payload(entry.event, device), event.event_id).delivered
    assert [item["eventId"] for item in backend.basket_items()] == [event.event_id]
