"""The reference backend over HTTP: ThreadingHTTPServer, keep-alive, fault injection, restartable.

``stop()`` stops serving and cuts open keep-alive connections (so a stopped
backend really is unreachable) but keeps the data; ``start()`` again serves
the same data on the same port, like a backend coming back. ``forget()`` is
the backend restarted on an empty database. ``close()`` also closes the
database.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

import structlog

from agent.devserver.app import BackendApp
from agent.devserver.faults import Fault, FaultQueue
from agent.devserver.store import BackendStore
from agent.devserver.validate import ROUTE_BASKET, ROUTE_PENDING

log = structlog.get_logger(__name__)

MAX_BODY = 1 << 20
JOIN_TIMEOUT_S = 5.0
CALL_LOG_MAX = 100_000


@dataclass(frozen=True)
class Call:
    """One request as the backend answered it (``status`` 0: connection dropped or raw bytes).

    ``event_id`` is the body's ``eventId`` when the body is a JSON object with one.
    """

    method: str
    path: str
    status: int
    idempotency_key: str | None
    injected: bool
    event_id: str | None = None


def body_event_id(body: bytes) -> str | None:
    """The ``eventId`` string of a JSON object body, else None."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    value = data.get("eventId") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], backend: ReferenceBackend) -> None:
        self.backend = backend
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self.accepted = 0
        super().__init__(address, _Handler)

    def process_request(self, request, client_address):  # type: ignore[no-untyped-def]
        with self._open_lock:
            self._open.add(request)
            self.accepted += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request):  # type: ignore[no-untyped-def]
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):  # type: ignore[no-untyped-def]
        # A client hanging up mid-answer is normal here (tests cut connections on purpose).
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.debug("client hung up", client=client_address[0], error=str(exc))
            return
        log.error("request handler failed", client=client_address[0], exc_info=exc)

    def cut_connections(self) -> None:
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "basketagent-devserver"
    # An idle keep-alive connection is dropped after this long.
    timeout = 30
    # Headers and body go out as two writes; with Nagle on, the client's delayed ACK
    # would hold each answer back ~40 ms.
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http request", line=format % args)

    def _dispatch(self, method: str) -> None:
        backend = self.server.backend
        split = urlsplit(self.path)
        headers = {key.lower(): value for key, value in self.headers.items()}
        body = self._read_body(headers)
        if body is None:
            return
        key = headers.get("idempotency-key")
        event_id = body_event_id(body) if body else None
        fault = backend.faults.take(split.path)
        if fault is not None and not fault.passthrough:
            self._answer_fault(method, split.path, key, event_id, fault)
            return
        status, payload = backend.app.handle(method, split.path, dict(parse_qsl(split.query)),
                                             headers, body)
        backend.record(Call(method, split.path, status, key, fault is not None, event_id))
        if fault is not None and fault.delay_s and backend.wait_stopping(fault.delay_s):
            self.close_connection = True  # stopped mid-delay: go away without an answer
            return
        self._send_json(status, payload)

    def _read_body(self, headers: dict[str, str]) -> bytes | None:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._send_json(411, {"error": "send a Content-Length"})
            self.close_connection = True
            return None
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._send_json(413 if length > MAX_BODY else 422, {"error": "bad Content-Length"})
            self.close_connection = True
            return None
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            # The client went away mid-body (killed while sending): no request to answer.
            log.debug("request body cut off", path=self.path, expected=length, got=len(body))
            self.close_connection = True
            return None
        return body

    def _answer_fault(self, method: str, path: str, key: str | None, event_id: str | None,
                      fault: Fault) -> None:
        backend = self.server.backend
        if fault.delay_s and backend.wait_stopping(fault.delay_s):
            self.close_connection = True  # stopped mid-delay: go away without an answer
            return
        if fault.raw is not None:
            backend.record(Call(method, path, 0, key, True, event_id))
            if fault.raw:
                self.wfile.write(fault.raw)
                self.wfile.flush()
            self.close_connection = True
            return
        backend.record(Call(method, path, fault.status, key, True, event_id))
        if fault.body is None:
            payload: bytes = json.dumps({"error": "injected", "status": fault.status}).encode()
        elif isinstance(fault.body, str):
            payload = fault.body.encode("utf-8")
        else:
            payload = fault.body
        extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        self._send_bytes(fault.status, payload, extra)

    def _send_json(self, status: int, payload: Any) -> None:
        self._send_bytes(status, json.dumps(payload).encode("utf-8"), {})

    def _send_bytes(self, status: int, payload: bytes, extra: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


class ReferenceBackend:
    """The project's reference basket backend, for development, demos and tests."""

    def __init__(self, db_path: Path | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.store = BackendStore(db_path)
        self.app = BackendApp(self.store)
        self.faults = FaultQueue()
        self.host = host
        self.port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._calls: deque[Call] = deque(maxlen=CALL_LOG_MAX)
        self._calls_changed = threading.Condition()
        self._accepted_before = 0

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> Self:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server((self.host, self.port), self)
        # Port 0 picks a free port once; a restart serves on the same one.
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={
            "poll_interval": 0.05}, name="devserver", daemon=True)
        self._thread.start()
        log.info("reference backend listening", url=self.url)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        server.cut_connections()
        self._accepted_before += server.accepted
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT_S)
        log.info("reference backend stopped", url=self.url)

    def close(self) -> None:
        self.stop()
        self.store.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def connections(self) -> int:
        """TCP connections accepted so far (keep-alive reuses one for many requests)."""
        current = self._server.accepted if self._server is not None else 0
        return self._accepted_before + current

    def wait_stopping(self, seconds: float) -> bool:
        """Wait ``seconds`` (an injected delay), cut short by stop(); True when stopped."""
        return self._stopping.wait(seconds)

    # -- data --------------------------------------------------------------------------
    def pair(self, code: str) -> bool:
        return self.store.pair(code) is not None

    def forget(self) -> int:
        return self.store.forget()

    def devices(self) -> list[dict[str, Any]]:
        return self.store.devices()

    def basket_items(self, device_id: str | None = None) -> list[dict[str, Any]]:
        return self.store.items(ROUTE_BASKET, device_id)

    def pending_items(self, device_id: str | None = None) -> list[dict[str, Any]]:
        return self.store.items(ROUTE_PENDING, device_id)

    # -- test hooks ----------------------------------------------------------------------
    def inject(self, path_prefix: str, status: int = 503, times: int = 1, *,
               retry_after: str | float | None = None, body: str | bytes | None = None,
               delay_s: float = 0.0, raw: bytes | None = None, passthrough: bool = False) -> None:
        """Queue ``times`` canned answers for requests whose path starts with ``path_prefix``.

        ``passthrough``: handle the request for real (store it), then wait
        ``delay_s`` before answering - the item is stored but the caller has
        no answer yet, as when a client dies between the backend's commit
        and its 2xx arriving.
        """
        self.faults.add(Fault(path_prefix, status, times,
                              None if retry_after is None else str(retry_after),
                              body, delay_s, raw, passthrough))

    def record(self, call: Call) -> None:
        with self._calls_changed:
            self._calls.append(call)
            self._calls_changed.notify_all()

    @property
    def calls(self) -> list[Call]:
        with self._calls_changed:
            return list(self._calls)

    def wait_calls(self, count: int, timeout: float) -> bool:
        """Block until at least ``count`` requests were answered, or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with self._calls_changed:
            while len(self._calls) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._calls_changed.wait(remaining)
            return True
