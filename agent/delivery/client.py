"""The HTTP client for the basket backend: one attempt per call, every answer classed per the contract.

Classes of answer (shared/spec/backend-contract.md):

* 2xx: DELIVERED (for register, only with a deviceId string and a 4-digit code).
* 408, 429, 5xx, 3xx, timeout, refused/reset connection, unreadable body, a
  register answer without a usable body: TRANSIENT, and a circuit-breaker failure.
* 400 on pending-items: NOT_PAIRED.
* 401, 403, 404, 410 on basket/pending: UNKNOWN_DEVICE.
* any other 4xx (and any 4xx on register): REFUSED, with the start of the body.
* breaker open: BREAKER_OPEN without touching the network.

Redirects are not followed: requests would turn a redirected POST into a GET,
and a 200 to that GET would look like a delivery. A 3xx is kept as transient
and its Location named, so the event stays journaled until the URL is fixed.

Each call is bounded: connect and read timeouts from ``backend``, and the
body is read only up to MAX_BODY_BYTES and until connect + read timeout has
passed since the call began (then at most one more read timeout). A caller
with a deadline of its own (``flush --timeout``) passes ``timeout_s``: both
timeouts are then capped by it.

Nothing here raises for an answer: the caller (the sender) decides from the
``Outcome``. The request body and headers are never logged.
"""

from __future__ import annotations

import email.utils
import enum
import http.client
import json
import math
import re
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Self

import requests
import structlog

from agent import __version__
from agent.basket.event import ROUTE_BASKET, ROUTE_PENDING, ProductEvent
from agent.config import BackendConfig, DeliveryConfig
from agent.delivery.breaker import CircuitOpen, MonotonicBreaker
from agent.delivery.identity import Identity

log = structlog.get_logger(__name__)

BODY_START_CHARS = 200
# Answers are small JSON documents; more than this is not read (and a 2xx still counts).
MAX_BODY_BYTES = 64 * 1024
# A Retry-After further out than this is taken as this: a backend's typo must not
# silence a device for months.
RETRY_AFTER_MAX_S = 24 * 3600.0
# A capped timeout is never below this (requests refuses 0; a tiny one only wastes the call).
MIN_TIMEOUT_S = 0.01
_CODE = re.compile(r"^[0-9]{4}$")
_UNKNOWN_DEVICE = frozenset({401, 403, 404, 410})


class OutcomeKind(enum.Enum):
    DELIVERED = "delivered"
    TRANSIENT = "transient"
    NOT_PAIRED = "not_paired"
    UNKNOWN_DEVICE = "unknown_device"
    REFUSED = "refused"
    BREAKER_OPEN = "breaker_open"


DELIVERED = OutcomeKind.DELIVERED
TRANSIENT = OutcomeKind.TRANSIENT
NOT_PAIRED = OutcomeKind.NOT_PAIRED
UNKNOWN_DEVICE = OutcomeKind.UNKNOWN_DEVICE
REFUSED = OutcomeKind.REFUSED
BREAKER_OPEN = OutcomeKind.BREAKER_OPEN


@dataclass(frozen=True)
class Outcome:
    """How one call ended.

    ``status`` is None when no HTTP answer came. ``retry_after_s`` is the
    backend's Retry-After in seconds (or, for BREAKER_OPEN, the time until the
    breaker lets a trial call through). ``body_start`` is the start of the
    answer's body; ``error`` says in a few words what went wrong.
    """

    kind: OutcomeKind
    status: int | None = None
    retry_after_s: float | None = None
    body_start: str = ""
    error: str = ""

    @property
    def delivered(self) -> bool:
        return self.kind is DELIVERED


@dataclass(frozen=True)
class Registration:
    """A register call's outcome and, when DELIVERED, the new deviceId and pairing code."""

    outcome: Outcome
    device_id: str | None = None
    code: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome.delivered and self.device_id is not None and self.code is not None

    def identity(self, backend_url: str, registered_at: str) -> Identity:
        if not self.ok:
            raise ValueError(f"registration did not succeed: {self.outcome.kind.value}")
        assert self.device_id is not None and self.code is not None
        return Identity(self.device_id, self.code, backend_url, registered_at)


def event_payload(event: ProductEvent, device_id: str) -> dict[str, Any]:
    """The JSON body the contract asks for on the event's route (plus ``"clockSynced": false``
    when the wall clock was not synchronised as the event was detected)."""
    payload: dict[str, Any] = {
        "productId": event.product_id,
        "quantity": event.quantity,
        "confidence": event.confidence,
        "deviceId": device_id,
        "eventId": event.event_id,
        "detectedAt": event.detected_at,
    }
    if event.route == ROUTE_PENDING:
        payload["name"] = event.name
    if not event.clock_synced:
        # Only then: detectedAt may be off. Backends ignore fields they do not know.
        payload["clockSynced"] = False
    return payload


def parse_retry_after(value: str | None, now_wall: float) -> float | None:
    """Retry-After as seconds from now (delta-seconds or an HTTP date), at most RETRY_AFTER_MAX_S;
    None when absent or bad."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return min(RETRY_AFTER_MAX_S, max(0.0, when.timestamp() - now_wall))
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(RETRY_AFTER_MAX_S, seconds)


class _Transient(Exception):
    """A failed answer, raised inside the breaker so pybreaker counts it."""

    def __init__(self, status: int | None, retry_after_s: float | None, body_start: str,
                 error: str) -> None:
        super().__init__(error)
        self.status = status
        self.retry_after_s = retry_after_s
        self.body_start = body_start
        self.error = error


def _describe(exc: BaseException) -> str:
    """A few words for a network error instead of urllib3's nested repr."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connect timed out"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "no answer in time (read timed out)"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed"
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        # RemoteDisconnected is a ConnectionResetError: test it first.
        if isinstance(current, http.client.RemoteDisconnected):
            return "connection closed without an answer"
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, ConnectionResetError):
            return "connection reset"
        if isinstance(current, socket.gaierror):
            return "host name not resolved"
        if isinstance(current, (BrokenPipeError, ConnectionAbortedError)):
            return "connection dropped"
        stack.extend(arg for arg in current.args if isinstance(arg, BaseException))
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "answer cut off (unreadable body)"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "connection closed without an answer"
    return f"{type(exc).__name__}: {str(exc)[:BODY_START_CHARS]}"


@dataclass(frozen=True)
class _Answer:
    """An HTTP answer with at most MAX_BODY_BYTES of its body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def body_start(self) -> str:
        return self.body[:BODY_START_CHARS * 4].decode("utf-8", "replace")[:BODY_START_CHARS]


def _read_answer(response: requests.Response, deadline: float) -> _Answer:
    """Read the body up to a size cap and a deadline, so neither a huge nor a trickling body
    holds the caller; a fully read answer hands its connection back for keep-alive."""
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(chunk_size=8192):
            chunks.append(chunk)
            size += len(chunk)
            if size >= MAX_BODY_BYTES or time.monotonic() > deadline:
                break
    finally:
        response.close()
    return _Answer(response.status_code, response.headers, b"".join(chunks)[:MAX_BODY_BYTES])


class BackendClient:
    """Talks to the basket backend. One requests.Session (keep-alive), one breaker for all routes."""

    def __init__(
        self,
        config: BackendConfig,
        delivery: DeliveryConfig,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.base_url = config.url.rstrip("/")
        self._owns_session = session is None
        self.session = session if session is not None else requests.Session()
        self._timeout = (config.connect_timeout_s, config.read_timeout_s)
        self._wall_clock = wall_clock
        self.breaker = MonotonicBreaker(delivery.breaker_fail_max, delivery.breaker_reset_s,
                                        clock=clock)
        self._headers = {"User-Agent": f"basketagent/{__version__}", "Accept": "application/json"}

    @property
    def breaker_state(self) -> str:
        return self.breaker.state

    def path_for(self, route: str) -> str:
        if route == ROUTE_BASKET:
            return self.config.basket_path
        if route == ROUTE_PENDING:
            return self.config.pending_path
        raise ValueError(f"unknown route {route!r}")

    def register(self, agent_version: str = __version__, *,
                 timeout_s: float | None = None) -> Registration:
        found: dict[str, str] = {}

        def check(answer: _Answer) -> None:
            try:
                data = json.loads(answer.body.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                data = None
            if (not isinstance(data, dict) or not isinstance(data.get("deviceId"), str)
                    or not data["deviceId"] or not isinstance(data.get("code"), str)
                    or not _CODE.match(data["code"])):
                raise _Transient(answer.status, None, answer.body_start,
                                 "register answer lacks a deviceId and a 4-digit code")
            found["device_id"] = data["deviceId"]
            found["code"] = data["code"]

        outcome = self._call(self.config.register_path, {"agentVersion": agent_version}, {},
                             check, route=None, timeout_s=timeout_s)
        if not outcome.delivered:
            return Registration(outcome)
        return Registration(outcome, found["device_id"], found["code"])

    def send(self, route: str, payload: dict[str, Any], idempotency_key: str, *,
             timeout_s: float | None = None) -> Outcome:
        """One POST of an event; ``timeout_s`` caps the connect and read timeouts."""
        path = self.path_for(route)
        return self._call(path, payload, {"Idempotency-Key": idempotency_key}, None, route=route,
                          timeout_s=timeout_s)

    def health(self) -> bool:
        """One GET of the health path, outside the breaker (a probe, not traffic)."""
        try:
            answer = self._exchange("GET", self.base_url + self.config.health_path, None, {})
        except requests.RequestException as exc:
            log.info("backend health probe failed", error=_describe(exc))
            return False
        return 200 <= answer.status < 300

    def close(self) -> None:
        if self._owns_session:
            self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _exchange(self, method: str, url: str, body: dict[str, Any] | None,
                  headers: dict[str, str], timeout_s: float | None = None) -> _Answer:
        """One request; raises requests.RequestException when no whole answer came."""
        timeout = self._timeout
        if timeout_s is not None:
            cap = max(MIN_TIMEOUT_S, timeout_s)
            timeout = (min(timeout[0], cap), min(timeout[1], cap))
        # The network deadline is real time whatever clock the breaker runs on.
        deadline = time.monotonic() + timeout[0] + timeout[1]
        response = self.session.request(method, url, json=body,
                                        headers={**self._headers, **headers},
                                        timeout=timeout, allow_redirects=False, stream=True)
        return _read_answer(response, deadline)

    def _call(self, path: str, body: dict[str, Any], headers: dict[str, str],
              check: Callable[[_Answer], None] | None, *, route: str | None,
              timeout_s: float | None = None) -> Outcome:
        url = self.base_url + path

        def attempt() -> _Answer:
            try:
                answer = self._exchange("POST", url, body, headers, timeout_s)
            except requests.RequestException as exc:
                raise _Transient(None, None, "", _describe(exc)) from exc
            status = answer.status
            if status in (408, 429) or status >= 500 or 300 <= status < 400 or status < 200:
                error = f"HTTP {status}"
                if 300 <= status < 400:
                    error += (f" redirect to {answer.headers.get('Location', '?')}: "
                              "check backend.url")
                retry = parse_retry_after(answer.headers.get("Retry-After"), self._wall_clock())
                raise _Transient(status, retry, answer.body_start, error)
            if 200 <= status < 300 and check is not None:
                check(answer)
            return answer

        try:
            answer = self.breaker.call(attempt)
        except CircuitOpen:
            return Outcome(BREAKER_OPEN, retry_after_s=self.breaker.open_remaining(),
                           error="circuit breaker open after repeated failures")
        except _Transient as failure:
            log.debug("backend call failed (transient)", path=path, status=failure.status,
                      error=failure.error, retry_after_s=failure.retry_after_s)
            return Outcome(TRANSIENT, failure.status, failure.retry_after_s, failure.body_start,
                           failure.error)
        assert isinstance(answer, _Answer)
        return self._classify(answer, route)

    def _classify(self, answer: _Answer, route: str | None) -> Outcome:
        status = answer.status
        if 200 <= status < 300:
            return Outcome(DELIVERED, status)
        body = answer.body_start
        retry = parse_retry_after(answer.headers.get("Retry-After"), self._wall_clock())
        if route == ROUTE_PENDING and status == 400:
            return Outcome(NOT_PAIRED, status, retry, body, "device not paired yet")
        if route is not None and status in _UNKNOWN_DEVICE:
            return Outcome(UNKNOWN_DEVICE, status, retry, body, f"HTTP {status}: device unknown")
        return Outcome(REFUSED, status, retry, body, f"HTTP {status} refused")
