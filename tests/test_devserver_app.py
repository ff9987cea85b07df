"""The reference backend's routes without sockets: status codes and answers per the contract."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from agent.devserver.app import BackendApp
from agent.devserver.store import BackendStore


@pytest.fixture
def app() -> Iterator[BackendApp]:
    store = BackendStore()
    try:
        yield BackendApp(store)
    finally:
        store.close()


def call(app: BackendApp, method: str, path: str, body: Any = None, *,
         key: str | None = None, query: dict[str, str] | None = None) -> tuple[int, Any]:
    raw = b"" if body is None else json.dumps(body).encode()
    headers = {"idempotency-key": key} if key else {}
    return app.handle(method, path, query or {}, headers, raw)


def item(device_id: str, event_id: str = "e1", **changes: Any) -> dict[str, Any]:
    payload = {"productId": "P002", "quantity": 1, "confidence": 0.5, "deviceId": device_id,
               "eventId": event_id, "detectedAt": "2026-12-04T10:00:00Z", "name": "Bananas"}
    payload.update(changes)
    return payload


def new_device(app: BackendApp) -> dict[str, str]:
    status, answer = call(app, "POST", "/api/devices/register", {"agentVersion": "9.9"})
    assert status == 201
    return answer


def test_register_keeps_the_agent_version_and_ignores_unknown_fields(app: BackendApp) -> None:
    status, answer = call(app, "POST", "/api/devices/register", {"agentVersion": "1.2", "x": 1})
    assert status == 201
    assert app.store.device(answer["deviceId"])["agentVersion"] == "1.2"
    status, other = call(app, "POST", "/api/devices/register", {"agentVersion": 3})
    assert status == 201 and app.store.device(other["deviceId"])["agentVersion"] is None
    assert call(app, "POST", "/api/devices/register", [1])[0] == 422


def test_header_key_wins_over_event_id(app: BackendApp) -> None:
    device = new_device(app)["deviceId"]
    assert call(app, "POST", "/api/basket", item(device, "e1"), key="k1")[0] == 201
    # Same key, different eventId: a repeat of the same request.
    assert call(app, "POST", "/api/basket", item(device, "e2"), key="k1")[0] == 200
    assert call(app, "POST", "/api/basket", item(device, "e1"), key="k2")[0] == 201
    assert [i["idempotencyKey"] for i in app.store.items("basket")] == ["k1", "k2"]


def test_a_delivered_pending_item_repeat_is_200_even_if_asked_again(app: BackendApp) -> None:
    device = new_device(app)
    app.store.pair(device["code"])
    assert call(app, "POST", "/api/pending-items", item(device["deviceId"]))[0] == 201
    assert call(app, "POST", "/api/pending-items", item(device["deviceId"]))[0] == 200


def test_basket_does_not_need_pairing(app: BackendApp) -> None:
    device = new_device(app)["deviceId"]
    body = item(device)
    del body["name"]
    assert call(app, "POST", "/api/basket", body)[0] == 201


def test_pending_needs_a_name(app: BackendApp) -> None:
    device = new_device(app)
    app.store.pair(device["code"])
    status, answer = call(app, "POST", "/api/pending-items", item(device["deviceId"], name=""))
    assert status == 422 and answer["problems"] == ["name must be a non-empty string"]


def test_validation_comes_before_the_device_check(app: BackendApp) -> None:
    status, answer = call(app, "POST", "/api/basket", item("nobody", quantity=True))
    assert status == 422 and "quantity" in answer["problems"][0]
    assert call(app, "POST", "/api/basket", item("nobody"))[0] == 404


def test_pair_accepts_a_numeric_code(app: BackendApp) -> None:
    device = new_device(app)
    status, answer = call(app, "POST", "/api/devices/pair", {"code": int(device["code"])})
    assert status == 200 and answer == {"deviceId": device["deviceId"], "paired": True}
    assert call(app, "POST", "/api/devices/pair", {"code": True})[0] == 422
    assert call(app, "POST", "/api/devices/pair", None)[0] == 422


def test_listings_and_forget(app: BackendApp) -> None:
    device = new_device(app)["deviceId"]
    call(app, "POST", "/api/basket", item(device))
    status, listed = call(app, "GET", "/api/basket", query={"deviceId": device})
    assert status == 200 and len(listed) == 1
    assert call(app, "GET", "/api/basket", query={"deviceId": "other"})[1] == []
    assert call(app, "GET", "/api/pending-items")[1] == []
    assert call(app, "POST", "/api/admin/forget") == (200, {"forgotten": 1})
    assert call(app, "GET", "/api/basket")[1] == []


def test_routing_errors(app: BackendApp) -> None:
    assert call(app, "GET", "/api/devices/register")[0] == 405
    assert call(app, "POST", "/health")[0] == 405
    assert call(app, "GET", "/api/other")[0] == 404
