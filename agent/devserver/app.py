"""The reference backend's routes: a request in, a status and a JSON answer out, no sockets.

Answers follow shared/spec/backend-contract.md: register 201; basket and
pending-items idempotent by Idempotency-Key (else eventId), a repeat answered
200 with nothing new stored; pending-items 400 while the device is not
paired; an unknown deviceId 404. Bodies that fail validation get 422, never
400, because 400 on pending-items means "not paired" to the agent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import structlog

from agent.devserver.store import DUPLICATE, BackendStore
from agent.devserver.validate import ROUTE_BASKET, ROUTE_PENDING, item_problems

log = structlog.get_logger(__name__)

HEALTH = "/health"
REGISTER = "/api/devices/register"
PAIR = "/api/devices/pair"
BASKET = "/api/basket"
PENDING = "/api/pending-items"
FORGET = "/api/admin/forget"

_ITEM_ROUTES = {BASKET: ROUTE_BASKET, PENDING: ROUTE_PENDING}

Answer = tuple[int, Any]


def _error(status: int, message: str, **extra: Any) -> Answer:
    return status, {"error": message, **extra}


def _json_body(body: bytes) -> tuple[Any, str | None]:
    if not body.strip():
        return None, "empty body"
    try:
        return json.loads(body.decode("utf-8")), None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"body is not JSON: {exc}"


class BackendApp:
    def __init__(self, store: BackendStore) -> None:
        self.store = store

    def handle(self, method: str, path: str, query: Mapping[str, str],
               headers: Mapping[str, str], body: bytes) -> Answer:
        routes: dict[tuple[str, str], Any] = {
            ("GET", HEALTH): lambda: (200, {"status": "ok"}),
            ("POST", REGISTER): lambda: self._register(body),
            ("POST", PAIR): lambda: self._pair(body),
            ("POST", BASKET): lambda: self._add(BASKET, headers, body),
            ("POST", PENDING): lambda: self._add(PENDING, headers, body),
            ("GET", BASKET): lambda: (200, self.store.items(ROUTE_BASKET, query.get("deviceId"))),
            ("GET", PENDING): lambda: (200, self.store.items(ROUTE_PENDING,
                                                             query.get("deviceId"))),
            ("POST", FORGET): lambda: (200, {"forgotten": self.store.forget()}),
        }
        handler = routes.get((method, path))
        if handler is not None:
            return handler()
        if any(known == path for _, known in routes):
            return _error(405, f"{method} is not allowed on {path}")
        return _error(404, f"no route {path}")

    def _register(self, body: bytes) -> Answer:
        data: Any = {}
        if body.strip():
            data, problem = _json_body(body)
            if problem is not None or not isinstance(data, dict):
                return _error(422, problem or "body must be a JSON object")
        version = data.get("agentVersion")
        device_id, code = self.store.register(version if isinstance(version, str) else None)
        log.info("device registered", device_id=device_id, code=code)
        return 201, {"deviceId": device_id, "code": code}

    def _pair(self, body: bytes) -> Answer:
        data, problem = _json_body(body)
        if problem is not None:
            return _error(422, problem)
        code = data.get("code") if isinstance(data, dict) else None
        if isinstance(code, int) and not isinstance(code, bool):
            code = f"{code:04d}"
        if not isinstance(code, str) or len(code) != 4 or not code.isdigit():
            return _error(422, "code must be 4 digits")
        device_id = self.store.pair(code)
        if device_id is None:
            return _error(404, "no unpaired device has this code")
        log.info("device paired", device_id=device_id)
        return 200, {"deviceId": device_id, "paired": True}

    def _add(self, path: str, headers: Mapping[str, str], body: bytes) -> Answer:
        route = _ITEM_ROUTES[path]
        data, problem = _json_body(body)
        if problem is not None:
            return _error(422, problem)
        problems = item_problems(route, data)
        if problems:
            return _error(422, "invalid item", problems=problems)
        device = self.store.device(data["deviceId"])
        if device is None:
            return _error(404, "unknown device", deviceId=data["deviceId"])
        key = headers.get("idempotency-key") or data["eventId"]
        if self.store.has_item(route, key):
            return 200, {"status": DUPLICATE, "eventId": data["eventId"]}
        if route == ROUTE_PENDING and not device["paired"]:
            return _error(400, "device not paired", deviceId=data["deviceId"])
        status = self.store.add_item(route, key, data)
        # Two identical requests racing both pass has_item; the insert decides.
        return (201 if status != DUPLICATE else 200), {"status": status, "eventId": data["eventId"]}
