"""Whatever the backend answers meanwhile, every journaled event ends up stored once, in route order.

Hypothesis mixes appends, injected failures (5xx, 408, 429 with Retry-After,
dropped connections) and stepped time; afterwards the faults stop and the
sender is stepped until the journal is empty.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sender_support import SteppedClock, make_config, make_event

from agent.basket.event import ROUTE_BASKET, ROUTE_PENDING, ROUTES
from agent.delivery.client import BackendClient
from agent.delivery.identity import IdentityStore
from agent.delivery.journal import Journal
from agent.delivery.sender import Sender
from agent.devserver import ReferenceBackend

PATHS = {ROUTE_BASKET: "/api/basket", ROUTE_PENDING: "/api/pending-items"}
FAULTS = ("500", "503", "408", "429-retry-after", "dropped")

operation = st.one_of(
    st.tuples(st.just("append"), st.sampled_from(ROUTES)),
    st.tuples(st.just("fault"), st.sampled_from(FAULTS), st.sampled_from(ROUTES),
              st.integers(1, 4)),
    st.tuples(st.just("step"), st.floats(0.0, 40.0)),
)


@pytest.fixture(scope="module")
def shared_backend() -> Iterator[ReferenceBackend]:
    """One in-memory backend for every example of the module (hypothesis reruns the test body)."""
    with ReferenceBackend() as server:
        yield server


def inject(backend: ReferenceBackend, kind: str, route: str, times: int) -> None:
    path = PATHS[route]
    if kind == "dropped":
        backend.inject(path, 0, times=times, raw=b"")
    elif kind == "429-retry-after":
        backend.inject(path, 429, times=times, retry_after=7)
    else:
        backend.inject(path, int(kind), times=times)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=st.lists(operation, max_size=30), seed=st.integers(0, 2**16))
def test_every_event_is_stored_once_in_route_order(shared_backend: ReferenceBackend,
                                                   operations: list[tuple], seed: int) -> None:
    backend = shared_backend
    backend.faults.clear()
    appended: dict[str, list[str]] = {route: [] for route in ROUTES}
    with tempfile.TemporaryDirectory() as tmp:
        clock = SteppedClock()
        config = make_config(Path(tmp), backend.url, backoff_initial_s=0.5, backoff_max_s=10.0,
                             not_paired_retry_s=5.0, breaker_fail_max=4, breaker_reset_s=20.0)
        journal = Journal.open(config.state_dir, config.journal)
        client = BackendClient(config.backend, config.delivery, clock=clock)
        sender = Sender(journal, client, IdentityStore(config.state_dir), config, clock=clock,
                        rng=random.Random(seed), wait=clock.wait)

        def step() -> float:
            due = sender.step(clock())
            status = sender.status()
            if status.pairing_code and not status.paired:
                backend.pair(status.pairing_code)
            return due

        try:
            for op in operations:
                if op[0] == "append":
                    event = make_event(op[1])
                    journal.append(event)
                    appended[op[1]].append(event.event_id)
                elif op[0] == "fault":
                    inject(backend, op[1], op[2], op[3])
                else:
                    clock.advance(op[1])
                    step()
            backend.faults.clear()
            for _ in range(100):
                if journal.stats().pending == 0:
                    break
                clock.now = max(clock.now, step())
            assert journal.stats().pending == 0
            assert journal.dead_letters() == []
        finally:
            client.close()
            journal.close()
    for route, items in ((ROUTE_BASKET, backend.basket_items()),
                         (ROUTE_PENDING, backend.pending_items())):
        ours = set(appended[route])
        stored = [item["eventId"] for item in items if item["eventId"] in ours]
        assert stored == appended[route]
