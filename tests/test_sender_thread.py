"""The sender's own thread: wake, stop while the backend hangs, failing rounds, drain beside it.

Nothing here is judged by elapsed time and no timer is waited out: the thread's
waits go through an injected wait that either records real waits that wake()
or stop() end, or moves a stepped clock. What passes in real time is bounded
polls of the thread's progress.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from sender_support import (
    RecordingWait,
    Rig,
    ThreadClock,
    basket_event,
    make_config,
    wait_until,
)
from structlog.testing import capture_logs

from agent.config import Config
from agent.delivery.client import BackendClient
from agent.delivery.identity import IdentityStore
from agent.delivery.journal import Journal
from agent.delivery.journal_segments import FileOps
from agent.delivery.live_status import live_status_path, read_live_status
from agent.delivery.sender import IDLE_S, SENDER_NICE, Sender
from agent.devserver import ReferenceBackend

BASKET = "/api/basket"


class BugOnce(FileOps):
    """Real file operations, except that the first write after ``arm()`` hits a bug.

    The bug is raised before anything is written, and it is no OSError, so the
    journal passes it up unchanged, as it would one of its own.
    """

    def __init__(self) -> None:
        self.armed = False
        self.hits = 0

    def arm(self) -> None:
        self.armed = True

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        if self.armed:
            self.armed = False
            self.hits += 1
            raise RuntimeError("a bug under the journal")
        return super().pwrite(fd, data, offset)


class Parts:
    """Real journal, client and identity store for one state dir; senders built on them."""

    def __init__(self, state_dir: Path, url: str, ops: FileOps | None = None,
                 **delivery: Any) -> None:
        self.config: Config = make_config(state_dir, url, **delivery)
        self.journal = Journal.open(self.config.state_dir, self.config.journal, ops=ops)
        self.client = BackendClient(self.config.backend, self.config.delivery)
        self.senders: list[Sender] = []

    def sender(self, **kwargs: Any) -> Sender:
        sender = Sender(self.journal, self.client, IdentityStore(self.config.state_dir),
                        self.config, **kwargs)
        self.senders.append(sender)
        return sender

    def close(self) -> None:
        for sender in self.senders:
            sender.stop(2.0)
        self.client.close()
        self.journal.close()


@pytest.fixture
def make_parts(tmp_path: Path, backend: ReferenceBackend) -> Iterator[Callable[..., Parts]]:
    made: list[Parts] = []

    def make(**delivery: Any) -> Parts:
        parts = Parts(tmp_path / "state", backend.url, **delivery)
        made.append(parts)
        return parts

    yield make
    for parts in made:
        parts.close()


def basket_calls(backend: ReferenceBackend) -> int:
    return sum(call.path == BASKET for call in backend.calls)


def logged(logs: Sequence[Mapping[str, Any]], text: str) -> int:
    return sum(text in entry["event"] for entry in list(logs))


def test_wake_ends_the_idle_wait_and_the_thread_publishes_its_state(
        backend: ReferenceBackend, make_parts: Callable[..., Parts]) -> None:
    parts = make_parts()
    waits = RecordingWait()
    sender = parts.sender(wait=waits)
    sender.start()
    assert wait_until(lambda: len(waits.timeouts) >= 1), "nothing to send: the thread idles"
    for delivered in range(1, 4):
        parts.journal.append(basket_event())
        sender.wake()
        assert wait_until(lambda: len(backend.basket_items()) == delivered)  # noqa: B023
    assert wait_until(lambda: parts.journal.stats().pending == 0)
    live_path = live_status_path(parts.config.state_dir)
    assert wait_until(lambda: read_live_status(live_path) is not None)
    live = read_live_status(live_path)
    assert live is not None
    assert live["breaker"] == "closed" and live["deviceId"] == sender.status().device_id
    sender.stop(2.0)
    assert read_live_status(live_path) is None  # marked stopped
    # With nothing due the thread only ever idled, and wake() (or stop()) ended every wait.
    assert waits.timeouts and set(waits.timeouts) == {IDLE_S}
    assert waits.ended_by_event == [True] * len(waits.timeouts)


def test_wake_status_line_and_stop_do_not_wait_for_a_hanging_call(
        backend: ReferenceBackend, make_parts: Callable[..., Parts]) -> None:
    parts = make_parts(backend={"read_timeout_s": 120.0, "connect_timeout_s": 2.0})
    waits = RecordingWait()
    sender = parts.sender(wait=waits)
    event = basket_event()
    backend.inject(BASKET, 503, delay_s=120.0)  # answered only when the backend stops
    parts.journal.append(event)
    with capture_logs() as logs:
        sender.start()
        assert backend.faults.wait_taken(10), "the request is in flight"
        sender.wake()
        line = sender.status_line()  # what the frame loop asks for
        sender.stop(0.0)
        # All three came back while the thread is still inside the call: no answer yet.
        assert basket_calls(backend) == 0
        assert line.startswith("journal 1 pending")
        assert logged(logs, "sender still in an HTTP call at shutdown") == 1
        assert logged(logs, "sender stopped") == 0
        backend.stop()  # the hanging call ends without an answer
        assert wait_until(lambda: logged(logs, "sender stopped") == 1)
    # The thread saw the stop flag after the call: no backoff wait, no second attempt.
    assert waits.timeouts == []
    assert basket_calls(backend) == 0
    assert [entry.event.event_id for entry in parts.journal.pending()] == [event.event_id]


def test_the_thread_survives_failing_rounds_and_an_unwritable_status_file(
        make_parts: Callable[..., Parts], tmp_path: Path) -> None:
    parts = make_parts(backoff_initial_s=5.0)
    clock = ThreadClock(rounds=3)
    sender = parts.sender(clock=clock, wait=clock.wait,
                          live_status=tmp_path / "no-such-dir" / "status.json")
    parts.journal.close()  # every round now fails on the journal
    with capture_logs() as logs:
        sender.start()
        assert clock.parked.wait(10), "three stepped waits, then the thread parks"
        sender.stop(2.0)
    assert logged(logs, "delivery round failed; will retry") == 4
    assert logged(logs, "cannot write the delivery status file") >= 1
    assert clock.waits[:3] == [5.0, 5.0, 5.0]  # each failed round backs off backoff_initial_s


def test_the_thread_outlives_an_unexpected_error_in_the_journal(
        backend: ReferenceBackend, make_parts: Callable[..., Parts]) -> None:
    ops = BugOnce()
    parts = make_parts(ops=ops, backoff_initial_s=1.0, backoff_max_s=20.0)
    event = basket_event()
    parts.journal.append(event)
    ops.arm()  # the ack of the first delivery hits it
    clock = ThreadClock(rounds=1)
    sender = parts.sender(clock=clock, wait=clock.wait)
    with capture_logs() as logs:
        sender.start()
        assert clock.parked.wait(10), "one stepped backoff, a round that delivers, then idle"
        sender.stop(2.0)
    assert ops.hits == 1
    assert any(entry["log_level"] == "error" and "unexpectedly" in entry["event"]
               for entry in logs)
    assert clock.waits[0] == 20.0  # an unexpected error backs off backoff_max_s
    assert parts.journal.stats().pending == 0
    # Sent again after the failed ack, with the same key; the backend stored it once.
    keys = [call.idempotency_key for call in backend.calls if call.path == BASKET]
    assert keys == [event.event_id, event.event_id]
    assert len(backend.basket_items()) == 1


def test_drain_while_the_thread_runs(backend: ReferenceBackend,
                                     make_parts: Callable[..., Parts]) -> None:
    parts = make_parts()
    sender = parts.sender()
    sender.start()
    for _ in range(30):
        parts.journal.append(basket_event())  # no wake(): drain must not depend on the thread
    assert sender.drain(10.0) is True
    assert len(backend.basket_items()) == 30
    keys = [call.idempotency_key for call in backend.calls if call.path == BASKET]
    assert len(keys) == len(set(keys)) == 30  # the thread and drain never sent one twice


def test_sender_thread_yields_the_cpu_to_detection(
        make_rig: Callable[..., Rig], backend: ReferenceBackend) -> None:
    rig = make_rig(backend.url)
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    rig.sender.start()
    thread = rig.sender._thread
    assert thread is not None
    assert wait_until(lambda: thread.native_id is not None)
    native_id = thread.native_id
    assert native_id is not None
    expected = min(19, base + SENDER_NICE)
    assert wait_until(lambda: os.getpriority(os.PRIO_PROCESS, native_id) == expected)
    # The caller's own thread keeps its priority.
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base


class RestWait:
    """Records the thread's waits; a rest (a wait on the stop flag) returns at once."""

    def __init__(self) -> None:
        self.rests: list[float] = []
        self.idles: list[float] = []
        self.stop_flag: threading.Event | None = None

    def __call__(self, event: threading.Event, timeout: float) -> bool:
        if event is self.stop_flag:
            self.rests.append(timeout)
            return event.is_set()
        self.idles.append(timeout)
        return event.wait(timeout)


@pytest.mark.parametrize("share", [0.25, 1.0])
def test_beside_detection_a_backlog_goes_in_bursts_with_rests(
        backend: ReferenceBackend, make_parts: Callable[..., Parts], share: float) -> None:
    parts = make_parts()
    for _ in range(250):
        parts.journal.append(basket_event())
    waits = RestWait()
    sender = parts.sender(wait=waits, send_share=share)
    waits.stop_flag = sender._stop
    sender.start()
    assert wait_until(lambda: len(backend.basket_items()) == 250)
    assert wait_until(lambda: len(waits.idles) >= 1)
    sender.stop(2.0)
    if share == 1.0:
        assert waits.rests == []  # flush and drain send flat out
    else:
        # A batch of 100 at a time, each followed by a rest of 3x its sending time
        # (a 25% share), which new events (wake) do not cut short: it waits on stop.
        assert len(waits.rests) >= 2 and all(rest > 0 for rest in waits.rests)
