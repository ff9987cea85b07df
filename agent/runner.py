"""The frame loop: camera -> detector -> tracker -> journal, never waiting on the network.

The loop owns no parts: the entry point builds them and passes them in. One
shutdown path: a stop flag, then teardown in reverse order of start inside a
``finally``, every join bounded.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from agent.basket.event import ProductEvent
from agent.camera.frame import FrameSource
from agent.detect.types import Detection, Detector
from agent.errors import JournalError

log = structlog.get_logger(__name__)

# Events that could not be journaled (disk full) wait here and are retried
# every frame; past this bound the oldest are dropped and counted.
UNJOURNALED_MAX = 1000
# STATUS= is refreshed every STATUS_INTERVAL_S for the fps, and sooner (checked every
# STATUS_CHECK_S) when delivery's state changes, e.g. a pairing code to show.
STATUS_INTERVAL_S = 5.0
RECENT_EVENTS = 100
STATUS_CHECK_S = 0.5


class Tracker(Protocol):
    def observe(self, detections: Sequence[Detection]) -> list[ProductEvent]: ...

    def persist(self) -> None: ...


class EventJournal(Protocol):
    def append(self, event: ProductEvent) -> None: ...


class Outbox(Protocol):
    """The sender as the loop sees it: told about new events, asked for its state."""

    def wake(self) -> None: ...

    def status_line(self) -> str: ...


class Notifier(Protocol):
    def ready(self) -> None: ...

    def status(self, text: str) -> None: ...

    def watchdog(self, now: float | None = None) -> None: ...

    def stopping(self) -> None: ...


@dataclass
class LoopStats:
    frames: int = 0
    events: int = 0
    unjournaled_dropped: int = 0
    started: float = 0.0
    last_frame: float = 0.0
    fps: float = 0.0
    # The most recent journaled events, bounded: a service runs for months.
    events_log: deque[ProductEvent] = field(default_factory=lambda: deque(maxlen=RECENT_EVENTS))


class FrameLoop:
    """Runs the data path until the source ends, max_frames is reached, or stop is set."""

    def __init__(
        self,
        source: FrameSource,
        detector: Detector,
        tracker: Tracker,
        journal: EventJournal,
        outbox: Outbox,
        notifier: Notifier,
        *,
        fps: float = 0.0,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_event: Callable[[ProductEvent], None] | None = None,
    ) -> None:
        self.source = source
        self.detector = detector
        self.tracker = tracker
        self.journal = journal
        self.outbox = outbox
        self.notifier = notifier
        self.period = 1.0 / fps if fps > 0 else 0.0
        self.stop = stop or threading.Event()
        self.clock = clock
        self.on_event = on_event
        self.stats = LoopStats()
        self._unjournaled: deque[ProductEvent] = deque()
        self._last_status = float("-inf")
        self._last_check = float("-inf")
        self._last_outbox = ""
        self._fps_window: deque[float] = deque(maxlen=30)

    def run(self, max_frames: int | None = None) -> LoopStats:
        self.stats.started = self.clock()
        self.notifier.ready()
        self._publish_status(force=True)
        next_due = self.clock()
        while not self.stop.is_set():
            if max_frames is not None and self.stats.frames >= max_frames:
                break
            frame = self.source.read()
            if frame is None:
                log.info("camera source ended", source=self.source.name, frames=self.stats.frames)
                break
            self._process(self.detector.detect(frame.image))
            self._count_frame()
            if self.period:
                next_due = max(next_due + self.period, self.clock())
                self.stop.wait(max(0.0, next_due - self.clock()))
        if not self._unjournaled:
            self.tracker.persist()
        else:
            log.error("stopping with events not journaled (disk full?); the basket view is kept "
                      "as it was so they are detected again after a restart",
                      waiting=len(self._unjournaled))
        return self.stats

    def _process(self, detections: Sequence[Detection]) -> None:
        events = self.tracker.observe(detections)
        for event in events:
            self._unjournaled.append(event)
            self.stats.events += 1
        if self._unjournaled and self._journal_backlog():
            self.outbox.wake()
            if not self._unjournaled:
                # The view is persisted only once every event it implies is durable: a
                # crash in between re-adds (a duplicate the backend can see) rather than loses.
                self.tracker.persist()

    def _journal_backlog(self) -> bool:
        wrote = False
        while self._unjournaled:
            event = self._unjournaled[0]
            try:
                self.journal.append(event)
            except JournalError as exc:
                log.error("event not journaled yet; will retry", error=str(exc),
                          waiting=len(self._unjournaled))
                while len(self._unjournaled) > UNJOURNALED_MAX:
                    lost = self._unjournaled.popleft()
                    self.stats.unjournaled_dropped += 1
                    log.error("event dropped: journal unwritable too long",
                              event_id=lost.event_id, product_id=lost.product_id)
                return wrote
            self._unjournaled.popleft()
            wrote = True
            self.stats.events_log.append(event)
            log.info("product added", product_id=event.product_id, name=event.name,
                     quantity=event.quantity, confidence=round(event.confidence, 3),
                     route=event.route, event_id=event.event_id)
            if self.on_event is not None:
                self.on_event(event)
        return wrote

    def _count_frame(self) -> None:
        now = self.clock()
        self.stats.frames += 1
        self.stats.last_frame = now
        self._fps_window.append(now)
        if len(self._fps_window) >= 2:
            span = self._fps_window[-1] - self._fps_window[0]
            if span > 0:
                self.stats.fps = (len(self._fps_window) - 1) / span
        # Pinged only here: a stuck camera or a hung inference stops the pings.
        self.notifier.watchdog(now)
        self._publish_status()

    def _publish_status(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._last_check < STATUS_CHECK_S:
            return
        self._last_check = now
        outbox = self.outbox.status_line()
        if not force and outbox == self._last_outbox and now - self._last_status < STATUS_INTERVAL_S:
            return
        self._last_status = now
        self._last_outbox = outbox
        info = self.detector.info
        self.notifier.status(f"{self.stats.fps:.1f} fps on {info.device}; {outbox}")
