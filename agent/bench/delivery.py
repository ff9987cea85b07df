"""Delivery benchmark: the sender draining a journal against a raw requests loop, same run.

Both sides post the same kind of payloads (fresh event ids each, so neither
hits the backend's duplicate path) to their own reference backend, each in its
own process as a real backend would be, over one keep-alive session. The
sender's figure includes everything it does per event: reading the journal,
the breaker, classifying the answer and the journal ack; filling the journal
is not timed. The two sides alternate in rounds so a change in the machine's
load (a shared CI box) falls on both. The ratio is sender events/s over raw
events/s (goal >= 0.8).
"""

from __future__ import annotations

import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import requests

from agent.basket.event import ROUTE_BASKET, ProductEvent
from agent.bench.agent import DevServer
from agent.bench.result import BenchResult
from agent.clock import utc_iso, uuid7
from agent.config import build_config
from agent.delivery.client import BackendClient, event_payload
from agent.delivery.identity import IdentityStore
from agent.delivery.journal import Journal
from agent.delivery.sender import Sender
from agent.errors import OperationalError

GOAL = 0.80
EVENTS = 10_000
QUICK_EVENTS = 500
ROUNDS = 5
TIMEOUT_S = 10.0


def _events(count: int) -> list[ProductEvent]:
    now = utc_iso(time.time())
    return [ProductEvent(uuid7(), ROUTE_BASKET, f"P00{n % 6 + 1}", "Organic Apples", 1 + n % 3,
                         0.9, now) for n in range(count)]


def _stored(url: str, device_id: str) -> int:
    try:
        answer = requests.get(f"{url}/api/basket", params={"deviceId": device_id}, timeout=60)
        answer.raise_for_status()
        return len(answer.json())
    except (requests.RequestException, ValueError, TypeError) as exc:
        raise OperationalError(f"delivery benchmark: cannot count what {url} stored: {exc}",
                               fix="the reference backend misbehaved; run the benchmark again"
                               ) from exc


def _failed(what: str, url: str, why: object) -> OperationalError:
    return OperationalError(f"delivery benchmark: the raw loop {what} at {url}: {why}",
                            fix="the reference backend misbehaved; run the benchmark again")


class RawLoop:
    """The baseline: a bare keep-alive Session posting one payload after another."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()
        try:
            answer = self.session.post(f"{url}/api/devices/register", json={}, timeout=TIMEOUT_S)
            self.device_id = str(answer.json()["deviceId"])
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            self.session.close()
            raise _failed("cannot register", url, exc) from exc

    def post(self, events: list[ProductEvent]) -> float:
        bodies = [(event.event_id, event_payload(event, self.device_id)) for event in events]
        started = time.perf_counter()
        for key, body in bodies:
            try:
                answer = self.session.post(f"{self.url}/api/basket", json=body,
                                           headers={"Idempotency-Key": key}, timeout=TIMEOUT_S)
            except requests.RequestException as exc:
                raise _failed("cannot post an event", self.url, exc) from exc
            if not 200 <= answer.status_code < 300:
                raise _failed("an event was refused", self.url, f"HTTP {answer.status_code}")
        return time.perf_counter() - started

    def close(self) -> None:
        self.session.close()


class SenderDrain:
    """The agent's path: events journaled (untimed), then Sender.drain until the journal is empty."""

    def __init__(self, url: str, state_dir: Path) -> None:
        config = build_config(flags={"backend": {"url": url}, "state": {"dir": str(state_dir)}})
        self.journal = Journal.open(state_dir, config.journal)
        self.client = BackendClient(config.backend, config.delivery)
        self.sender = Sender(self.journal, self.client, IdentityStore(state_dir), config)
        self.sender.drain(TIMEOUT_S)  # registers, like the raw loop before its timing
        self.emptied = True

    @property
    def device_id(self) -> str:
        return self.sender.status().device_id or ""

    def post(self, events: list[ProductEvent]) -> float:
        for event in events:
            self.journal.append(event)
        started = time.perf_counter()
        self.emptied = self.sender.drain(3600.0) and self.emptied
        return time.perf_counter() - started

    def close(self) -> None:
        self.client.close()
        self.journal.close()


def run(quick: bool = False) -> list[BenchResult]:
    count = QUICK_EVENTS if quick else EVENTS
    per_round = count // ROUNDS
    count = per_round * ROUNDS
    raw_s = sender_s = 0.0
    with tempfile.TemporaryDirectory(prefix="basketagent-bench-delivery-") as name, \
            ExitStack() as stack:
        tmp = Path(name)
        raw_server = DevServer(tmp / "raw.sqlite3")
        stack.callback(raw_server.close)
        sender_server = DevServer(tmp / "sender.sqlite3")
        stack.callback(sender_server.close)
        raw = RawLoop(raw_server.url)
        stack.callback(raw.close)
        drain = SenderDrain(sender_server.url, tmp / "state")
        stack.callback(drain.close)
        for _ in range(ROUNDS):
            raw_s += raw.post(_events(per_round))
            sender_s += drain.post(_events(per_round))
        raw_stored = _stored(raw_server.url, raw.device_id)
        sender_stored = _stored(sender_server.url, drain.device_id)
        emptied = drain.emptied
    value, baseline = count / sender_s, count / raw_s
    complete = emptied and sender_stored == count and raw_stored == count
    note = (f"{count:,} events{' (quick)' if quick else ''} in {ROUNDS} alternating rounds; "
            "backends in their own processes")
    if not complete:
        note += f"; INCOMPLETE: sender stored {sender_stored}, raw stored {raw_stored}"
    return [BenchResult("sender drain to the reference backend", value, "events/s",
                        baseline=baseline, goal=f">= {GOAL:.2f}",
                        ok=complete and value / baseline >= GOAL, note=note)]
