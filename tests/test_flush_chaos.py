"""`basketagent flush` killed at random moments against a backend that misbehaves in every way
the contract allows: every journaled event arrives exactly once, keyed by its own eventId.

Real child processes, a real reference backend on loopback, a real journal on disk. The
backend answers 5xx, drops connections, stalls past the read timeout, rate-limits with
Retry-After, sends unreadable answers, forgets the device, and is paired only late.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.basket.event import ROUTE_BASKET, ROUTE_PENDING, ProductEvent
from agent.clock import uuid7
from agent.config import JournalConfig
from agent.delivery.journal import Journal
from agent.devserver import ReferenceBackend

EVENTS = 300
ROUNDS = 30


def journal_events(state: Path) -> list[ProductEvent]:
    events = [ProductEvent(uuid7(), ROUTE_PENDING if n % 3 == 0 else ROUTE_BASKET,
                           f"P00{n % 6 + 1}", "Organic Apples", 1 + n % 2, 0.5 + (n % 5) / 10,
                           "2026-12-04T10:00:00.000Z") for n in range(EVENTS)]
    with Journal.open(state, JournalConfig()) as journal:
        for event in events:
            journal.append(event)
    return events


def inject_chaos(backend: ReferenceBackend, rng: random.Random) -> None:
    """A few faults of every kind, queued for the next round's requests."""
    unreadable = b"HTTP/1.1 200 OK\r\nContent-Length: 80\r\n\r\n{\"deviceId\":"
    for path in ("/api/basket", "/api/pending-items"):
        kind = rng.choice(["5xx", "reset", "stall", "429", "unreadable", "none"])
        if kind == "5xx":
            backend.inject(path, rng.choice([500, 502, 503, 504]), times=rng.randint(1, 3))
        elif kind == "reset":
            backend.inject(path, raw=b"", times=2)
        elif kind == "stall":
            backend.inject(path, 200, delay_s=1.0)  # past the 0.4 s read timeout
        elif kind == "429":
            backend.inject(path, 429, retry_after=0.2)
        elif kind == "unreadable":
            backend.inject(path, raw=unreadable)


def stored_event_ids(backend: ReferenceBackend) -> list[str]:
    return [item["eventId"] for item in backend.basket_items() + backend.pending_items()]


def agent_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BASKETAGENT_", "NOTIFY_"))}
    env.update({
        "BASKETAGENT_BACKEND_READ_TIMEOUT_S": "0.4",
        "BASKETAGENT_BACKEND_CONNECT_TIMEOUT_S": "0.4",
        "BASKETAGENT_DELIVERY_BACKOFF_INITIAL_S": "0.02",
        "BASKETAGENT_DELIVERY_BACKOFF_MAX_S": "0.2",
        "BASKETAGENT_DELIVERY_REGISTER_BACKOFF_MAX_S": "0.2",
        "BASKETAGENT_DELIVERY_NOT_PAIRED_RETRY_S": "0.1",
        "BASKETAGENT_DELIVERY_BREAKER_RESET_S": "0.2",
    })
    return env


@pytest.mark.slow
def test_flush_killed_at_random_moments_delivers_each_event_once(tmp_path: Path) -> None:
    rng = random.Random(20261204)
    state = tmp_path / "state"
    events = journal_events(state)
    ids = {event.event_id for event in events}
    cmd = [sys.executable, "-m", "agent", "flush", "--timeout", "4", "--state-dir", str(state)]
    with ReferenceBackend(db_path=tmp_path / "backend.sqlite3") as backend:
        cmd += ["--backend", backend.url]
        finished = False
        killed = 0
        before_forget: list[str] = []
        for round_no in range(ROUNDS):
            inject_chaos(backend, rng)
            if round_no == 4:
                # A backend restarted on an empty database: what it had stored is gone with
                # it (the agent had its 2xx and let those events go); the rest must follow.
                before_forget = stored_event_ids(backend)
                backend.forget()
            if round_no >= 8:  # a person types the code in, late
                for device in backend.devices():
                    backend.pair(device["code"])
            proc = subprocess.Popen(cmd, env=agent_env(), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            if round_no < ROUNDS - 8:
                time.sleep(rng.uniform(0.3, 1.2))  # a real process: let it get somewhere
                proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate(timeout=30)
            killed += proc.returncode == -signal.SIGKILL
            assert "Traceback" not in err
            if proc.returncode == 0:
                finished = True
                break
        assert finished, "flush never emptied the journal once the chaos stopped being lethal"
        assert killed >= 5, "the kills must land while flush is at work"
        stored_ids = before_forget + stored_event_ids(backend)
        calls = [c for c in backend.calls if c.path in ("/api/basket", "/api/pending-items")]
    assert sorted(stored_ids) == sorted(ids)  # every event, each exactly once
    # Each call is keyed by the very event it carries (a swapped key would pass a set check).
    assert calls and [c for c in calls if c.idempotency_key != c.event_id] == []
    assert {c.event_id for c in calls} <= ids
    status = subprocess.run([sys.executable, "-m", "agent", "status", "--json", "--state-dir",
                             str(state), "--backend", "http://127.0.0.1:9"], env=agent_env(),
                            capture_output=True, text=True, timeout=60, check=False)
    assert json.loads(status.stdout)["journal"]["pending"] == 0
