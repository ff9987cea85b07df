"""The frame loop's own logic, with small in-test parts passed in."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import pytest

from agent.basket.event import ProductEvent
from agent.camera.frame import Frame
from agent.detect.types import Detection, DetectorInfo
from agent.errors import JournalError
from agent.runner import UNJOURNALED_MAX, FrameLoop


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class ListSource:
    name = "list"
    live = False

    def __init__(self, n: int, clock: Clock, step: float = 0.01) -> None:
        self.n, self.clock, self.step, self.index = n, clock, step, 0
        self.closed = False

    def read(self) -> Frame | None:
        if self.index >= self.n:
            return None
        self.clock.now += self.step
        frame = Frame(np.zeros((4, 4, 3), np.uint8), self.clock.now, self.index)
        self.index += 1
        return frame

    def close(self) -> None:
        self.closed = True


class OneDetector:
    info = DetectorInfo("m.tflite", "cpu", (160, 160), "ssd-tf1")

    def detect(self, image: np.ndarray) -> list[Detection]:
        return [Detection(0, "apple", 0.9, (0.1, 0.1, 0.2, 0.2))]

    def close(self) -> None:
        pass


def event(n: int) -> ProductEvent:
    return ProductEvent(f"id-{n}", "basket", "P001", "Apples", 1, 0.9, "2026-12-04T10:00:00.000Z")


class ScriptedTracker:
    """Emits one event on the listed frame numbers; records persist calls."""

    def __init__(self, on_frames: set[int]) -> None:
        self.on_frames = on_frames
        self.frame = 0
        self.persisted_after: list[int] = []
        self.journal: "Journal | None" = None

    def observe(self, detections: Sequence[Detection]) -> list[ProductEvent]:
        self.frame += 1
        return [event(self.frame)] if self.frame in self.on_frames else []

    def persist(self) -> None:
        self.persisted_after.append(len(self.journal.events) if self.journal else -1)


class Journal:
    def __init__(self, fail_first: int = 0) -> None:
        self.events: list[ProductEvent] = []
        self.fail_first = fail_first

    def append(self, event: ProductEvent) -> None:
        if self.fail_first > 0:
            self.fail_first -= 1
            raise JournalError("journal write failed: no space left")
        self.events.append(event)


class Outbox:
    def __init__(self) -> None:
        self.wakes = 0

    def wake(self) -> None:
        self.wakes += 1

    def status_line(self) -> str:
        return "journal 0"


class Notifier:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def ready(self) -> None:
        self.messages.append("READY=1")

    def status(self, text: str) -> None:
        self.messages.append("STATUS=" + text)

    def watchdog(self, now: float | None = None) -> None:
        self.messages.append("WATCHDOG=1")

    def stopping(self) -> None:
        self.messages.append("STOPPING=1")


def make_loop(n: int = 10, on_frames: set[int] | None = None, fail_first: int = 0, **kw):
    clock = Clock()
    tracker = ScriptedTracker(on_frames or set())
    journal = Journal(fail_first)
    tracker.journal = journal
    loop = FrameLoop(ListSource(n, clock), OneDetector(), tracker, journal, Outbox(), Notifier(),
                     clock=clock, **kw)
    return loop, tracker, journal


def test_runs_until_source_ends_and_journals_events_before_persisting() -> None:
    loop, tracker, journal = make_loop(10, {3, 7})
    stats = loop.run()
    assert stats.frames == 10
    assert [e.event_id for e in journal.events] == ["id-3", "id-7"]
    # persisted once after each journaled event (1, then 2 durable), then at the end
    assert tracker.persisted_after == [1, 2, 2]
    assert loop.outbox.wakes == 2


def test_max_frames_stops_early() -> None:
    loop, _, _ = make_loop(100)
    assert loop.run(max_frames=5).frames == 5


def test_stop_flag_ends_the_loop() -> None:
    stop = threading.Event()
    stop.set()
    loop, _, _ = make_loop(100, stop=stop)
    assert loop.run().frames == 0


def test_ready_first_and_a_watchdog_ping_per_frame() -> None:
    loop, _, _ = make_loop(3)
    loop.run()
    messages = loop.notifier.messages
    assert messages[0] == "READY=1"
    assert messages[1].startswith("STATUS=") and "on cpu" in messages[1]
    assert messages.count("WATCHDOG=1") == 3


def test_journal_failure_keeps_events_and_retries() -> None:
    loop, tracker, journal = make_loop(6, {2}, fail_first=2)
    stats = loop.run()
    # frame 2 fails, frame 3 fails, frame 4 succeeds: nothing lost, persisted only then
    assert [e.event_id for e in journal.events] == ["id-2"]
    assert stats.unjournaled_dropped == 0
    assert tracker.persisted_after[0] == 1


def test_unjournaled_backlog_is_bounded_and_counted() -> None:
    frames = UNJOURNALED_MAX + 5
    loop, _, journal = make_loop(frames, set(range(1, frames + 1)), fail_first=10**9)
    stats = loop.run()
    assert journal.events == []
    assert stats.unjournaled_dropped == 5


def test_fps_pacing_waits_on_the_stop_flag() -> None:
    waits: list[float] = []
    clock = Clock()

    class SleepingStop(threading.Event):
        """Waiting advances the fake clock, as a real wait would."""

        def wait(self, timeout: float | None = None) -> bool:
            waits.append(timeout or 0.0)
            clock.now += timeout or 0.0
            return False

    tracker = ScriptedTracker(set())
    loop = FrameLoop(ListSource(4, clock), OneDetector(), tracker, Journal(), Outbox(), Notifier(),
                     clock=clock, fps=10.0, stop=SleepingStop())
    loop.run()
    # each frame takes 0.01 s on the fake clock, so 0.09 s is left of each 0.1 s slot
    assert waits == [pytest.approx(0.09)] * 4


class ChangingOutbox(Outbox):
    """Delivery state that changes at a given frame (e.g. a pairing code appears)."""

    def __init__(self, clock: Clock, change_at: float) -> None:
        super().__init__()
        self.clock, self.change_at = clock, change_at

    def status_line(self) -> str:
        return "not paired, code 1234" if self.clock.now >= self.change_at else "not registered"


def test_status_follows_delivery_changes_sooner_than_the_fps_interval() -> None:
    clock = Clock()
    outbox = ChangingOutbox(clock, change_at=clock.now + 1.0)
    notifier = Notifier()
    # 200 frames 10 ms apart: 2 s, well under STATUS_INTERVAL_S.
    loop = FrameLoop(ListSource(200, clock), OneDetector(), ScriptedTracker(set()), Journal(0),
                     outbox, notifier, clock=clock)
    loop.run()
    statuses = [m for m in notifier.messages if m.startswith("STATUS=")]
    assert "not registered" in statuses[0]
    assert any("code 1234" in m for m in statuses[1:])
    # Unchanged state is not re-sent until the interval passes: one STATUS per change here.
    assert len(statuses) == 2
