"""Delivery benchmark: the sender draining a journal against a raw requests loop, same run.

Both sides post the same kind of payloads (fresh event ids each, so neither
hits the backend's duplicate path) to their own reference backend, each in its
own process as a real backend would be, over one keep-alive session. The
sender's figure includes everything it does per event: reading the journal,
the breaker, classifying the answer and the journal ack. Filling the journal
is not timed. The ratio is sender events/s over raw events/s (goal >= 0.8).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import requests

from agent.basket.event import ROUTE_BASKET, ProductEvent
from agent.bench.agent import DevServer
from agent.bench.result import BenchResult
from agent.clock import utc_iso, uuid7
from agent.config import build_config

GOAL = 0.80
EVENTS = 10_000
QUICK_EVENTS = 100
TIMEOUT_S = 10.0


def _events(count: int) -> list[ProductEvent]:
    now = utc_iso(time.time())
    return [ProductEvent(uuid7(), ROUTE_BASKET, f"P00{n % 6 + 1}", "Organic Apples", 1 + n % 3,
                         0.9, now) for n in range(count)]


def _stored(session: requests.Session, url: str, device_id: str) -> int:
    answer = session.get(f"{url}/api/basket", params={"deviceId": device_id}, timeout=60)
    answer.raise_for_status()
    return len(answer.json())


def raw_loop(url: str, count: int) -> tuple[float, int]:
    """Seconds to POST ``count`` payloads one by one with a bare Session, and how many were stored."""
    from agent.delivery.client import event_payload

    with requests.Session() as session:
        device_id = session.post(f"{url}/api/devices/register", json={},
                                 timeout=TIMEOUT_S).json()["deviceId"]
        bodies = [(event.event_id, event_payload(event, device_id)) for event in _events(count)]
        started = time.perf_counter()
        for key, body in bodies:
            answer = session.post(f"{url}/api/basket", json=body,
                                  headers={"Idempotency-Key": key}, timeout=TIMEOUT_S)
            if not 200 <= answer.status_code < 300:
                raise RuntimeError(f"raw loop: HTTP {answer.status_code}")
        elapsed = time.perf_counter() - started
        return elapsed, _stored(session, url, device_id)


def sender_drain(url: str, state_dir: Path, count: int) -> tuple[float, int, bool]:
    """Seconds for Sender.drain to empty a journal of ``count`` events, stored count, emptied."""
    from agent.delivery.client import BackendClient
    from agent.delivery.identity import IdentityStore
    from agent.delivery.journal import Journal
    from agent.delivery.sender import Sender

    config = build_config(flags={"backend": {"url": url}, "state": {"dir": str(state_dir)}})
    with Journal.open(state_dir, config.journal) as journal:
        for event in _events(count):
            journal.append(event)
        with BackendClient(config.backend, config.delivery) as client:
            sender = Sender(journal, client, IdentityStore(state_dir), config)
            started = time.perf_counter()
            emptied = sender.drain(3600.0)
            elapsed = time.perf_counter() - started
            device_id = sender.status().device_id or ""
    with requests.Session() as session:
        return elapsed, _stored(session, url, device_id), emptied


def run(quick: bool = False) -> list[BenchResult]:
    count = QUICK_EVENTS if quick else EVENTS
    with tempfile.TemporaryDirectory(prefix="basketagent-bench-delivery-") as name:
        tmp = Path(name)
        raw_server = DevServer(tmp / "raw.sqlite3")
        try:
            raw_s, raw_stored = raw_loop(raw_server.url, count)
        finally:
            raw_server.close()
        sender_server = DevServer(tmp / "sender.sqlite3")
        try:
            sender_s, sender_stored, emptied = sender_drain(sender_server.url, tmp / "state", count)
        finally:
            sender_server.close()
    value, baseline = count / sender_s, count / raw_s
    complete = emptied and sender_stored == count and raw_stored == count
    note = f"{count:,} events{' (quick)' if quick else ''}; backend in its own process"
    if not complete:
        note += f"; INCOMPLETE: sender stored {sender_stored}, raw stored {raw_stored}"
    return [BenchResult("sender drain to the reference backend", value, "events/s",
                        baseline=baseline, goal=f">= {GOAL:.2f}",
                        ok=complete and value / baseline >= GOAL, note=note)]
