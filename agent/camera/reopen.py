"""A live camera that keeps going: bounded reads, bad frames skipped, reopened with backoff.

A read that blocks longer than ``read_timeout_s`` counts as a camera failure.
The blocked call is left on its daemon worker thread (a stuck driver call
cannot be interrupted from Python) and a new worker serves the reopened
camera. After a failure the camera is closed and opened again, waiting
``initial * 2**n`` seconds between attempts, capped at ``backoff_max_s``.
Setting the ``stop`` event ends the waiting: ``read()`` then returns None, as
a source that has ended does, so a service can stop during a camera outage.

While it reopens, the source calls ``heartbeat`` (the service passes the
systemd watchdog ping) before each reopen attempt and at least every
``HEARTBEAT_EVERY_S`` of backoff, so a long outage is not taken for a hang.
A read itself never calls it: a read that hangs stops the pings until it
times out, as a wedged agent should.

A reopen attempt that hangs is given up on too, but its worker thread stays
stuck in the driver. After ``MAX_HUNG_OPENS`` hung attempts since the camera
last worked (attempts that fail with an error neither count nor reset this),
the driver is taken as wedged: the source logs it at ERROR, stops the pings and
starts no more attempts, only waiting for ``stop``. The watchdog then restarts
the agent, the only cure for a wedged driver, instead of stuck threads piling up.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import structlog

from agent.camera.frame import Frame, FrameSource
from agent.errors import CameraError

log = structlog.get_logger(__name__)

Wait = Callable[[threading.Event, float], bool]

INITIAL_BACKOFF_S = 0.5
# 0.5 s * 2**40 is far beyond any backoff cap; a larger exponent only risks OverflowError.
MAX_DOUBLINGS = 40
# This many bad frames in a row means the camera is failing, not one glitch.
MAX_BAD_FRAMES = 10
# Backoff waits are cut into steps this long, with a heartbeat before each.
HEARTBEAT_EVERY_S = 2.0
# This many reopen attempts that hung (since the camera last worked) mean a wedged driver.
MAX_HUNG_OPENS = 3
# With the driver wedged, the stop flag is waited on in steps this long.
WEDGED_WAIT_S = 60.0


def _wait(event: threading.Event, timeout: float) -> bool:
    return event.wait(timeout)


def backoff_delay(attempt: int, cap: float) -> float:
    """Seconds to wait before reopen attempt ``attempt`` (0-based), capped at ``cap``."""
    return min(INITIAL_BACKOFF_S * 2.0 ** min(attempt, MAX_DOUBLINGS), cap)


class CallTimeout(CameraError):
    """A camera call gave no answer in time; its worker thread is left stuck in it."""


class _Call:
    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class BoundedCaller:
    """Runs calls on one daemon worker thread and gives up on any that take too long."""

    def __init__(self, timeout_s: float, *, wait: Wait = _wait, name: str = "camera-read") -> None:
        self.timeout_s = timeout_s
        self._wait = wait
        self._name = name
        self._queue: queue.Queue[_Call | None] | None = None

    def _worker(self, jobs: queue.Queue[_Call | None]) -> None:
        while True:
            call = jobs.get()
            if call is None:
                return
            try:
                call.result = call.fn()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                call.error = exc
            call.done.set()

    def call(self, fn: Callable[[], Any], what: str = "a frame") -> Any:
        if self._queue is None:
            self._queue = queue.Queue()
            threading.Thread(target=self._worker, args=(self._queue,), name=self._name,
                             daemon=True).start()
        job = _Call(fn)
        self._queue.put(job)
        if not self._wait(job.done, self.timeout_s):
            # The worker is stuck inside fn; abandon it and start afresh next time.
            self._queue.put(None)
            self._queue = None
            raise CallTimeout(f"no answer for {what} within {self.timeout_s:g} s",
                              fix="check the camera; raise camera.read_timeout_s if it is slow")
        if job.error is not None:
            raise job.error
        return job.result

    def stop(self) -> None:
        if self._queue is not None:
            self._queue.put(None)
            self._queue = None


def _is_good(frame: Frame) -> bool:
    image = frame.image
    return (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
            and image.shape[2] == 3 and image.shape[0] > 0 and image.shape[1] > 0)


class ReopeningSource:
    """Wraps a live source's opener; reopens the camera when it fails, ends only on ``stop``.

    ``wait`` bounds each camera call; ``backoff_wait(stop, delay)`` waits between
    reopen attempts and returns True when ``stop`` is set; ``heartbeat()`` is called
    while reopening (see the module docstring).
    """

    live = True

    def __init__(self, opener: Callable[[], FrameSource], name: str, *,
                 backoff_max_s: float, read_timeout_s: float,
                 clock: Callable[[], float] = time.monotonic,
                 wait: Wait = _wait,
                 backoff_wait: Wait = _wait,
                 stop: threading.Event | None = None,
                 heartbeat: Callable[[], None] | None = None) -> None:
        self.name = name
        self._heartbeat = heartbeat
        self._opener = opener
        self._backoff_max_s = backoff_max_s
        self._clock = clock
        self._backoff_wait = backoff_wait
        self._stop = stop if stop is not None else threading.Event()
        self._reader = BoundedCaller(read_timeout_s, wait=wait)
        self._index = 0
        self._bad_in_row = 0
        self._failed_at = 0.0
        self.reopens = 0
        self.bad_frames = 0
        self.hung_opens = 0
        # The first open is not retried: a camera missing at start is an error to report.
        self._source: FrameSource | None = self._reader.call(opener, "opening the camera")

    def read(self) -> Frame | None:
        """The next good frame, or None once ``stop`` is set."""
        while not self._stop.is_set():
            if self._source is None:
                self._source = self._reopen()
                if self._source is None:
                    break
            source = self._source
            try:
                frame = self._reader.call(source.read)
            except CameraError as exc:
                self._failed(str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - a frame that fails to convert is one bad frame
                self._bad_frame(None, error=f"{type(exc).__name__}: {exc}")
                continue
            if frame is None or not _is_good(frame):
                self._bad_frame(frame)
                continue
            self._bad_in_row = 0
            out = Frame(image=frame.image, t_mono=frame.t_mono, index=self._index)
            self._index += 1
            return out
        log.info("camera source stopping", source=self.name, reopens=self.reopens)
        return None

    def _bad_frame(self, frame: Frame | None, error: str = "") -> None:
        self.bad_frames += 1
        self._bad_in_row += 1
        shape = None if frame is None else getattr(frame.image, "shape", None)
        log.warning("bad camera frame skipped", source=self.name, shape=shape, error=error,
                    in_a_row=self._bad_in_row)
        if self._bad_in_row >= MAX_BAD_FRAMES:
            self._failed(f"{self._bad_in_row} bad frames in a row")

    def _failed(self, reason: str) -> None:
        log.warning("camera lost; reopening", source=self.name, reason=reason)
        self._failed_at = self._clock()
        self._bad_in_row = 0
        self._close_current()

    def _close_current(self) -> None:
        source, self._source = self._source, None
        if source is None:
            return
        try:
            # Bounded too: closing a wedged camera can block like reading it.
            self._reader.call(source.close, "closing the camera")
        except Exception as exc:  # noqa: BLE001 - a failing close must not stop the reopen
            log.warning("camera close failed", source=self.name, error=str(exc))

    def _beat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat()

    def _backoff(self, delay: float) -> bool:
        """Wait ``delay`` seconds, a heartbeat before each step; True when ``stop`` is set."""
        if self._heartbeat is None:
            return self._backoff_wait(self._stop, delay)
        remaining = delay
        while True:
            self._beat()
            step = min(remaining, HEARTBEAT_EVERY_S)
            if self._backoff_wait(self._stop, step):
                return True
            remaining -= step
            if remaining <= 1e-9:
                return False

    def _reopen(self) -> FrameSource | None:
        """The reopened camera, or None when ``stop`` is set while waiting."""
        attempt = 0
        while True:
            if self.hung_opens >= MAX_HUNG_OPENS:
                self._wait_for_restart()
                return None
            if self._backoff(backoff_delay(attempt, self._backoff_max_s)):
                return None
            attempt += 1
            self._beat()
            try:
                source = self._reader.call(self._opener, "opening the camera")
            except CameraError as exc:
                hung = isinstance(exc, CallTimeout)
                if hung:
                    self.hung_opens += 1
                log.warning("camera reopen failed", source=self.name, attempt=attempt,
                            error=str(exc), hung=hung, hung_opens=self.hung_opens,
                            next_delay_s=backoff_delay(attempt, self._backoff_max_s))
                continue
            self._beat()
            self.reopens += 1
            self.hung_opens = 0
            log.warning("camera back", source=self.name, attempt=attempt,
                        outage_s=round(self._clock() - self._failed_at, 3))
            return source

    def _wait_for_restart(self) -> None:
        """No pings and no attempts: wait for ``stop`` while the watchdog restarts the agent."""
        log.error("camera driver not answering: leaving it to the watchdog to restart the agent",
                  source=self.name, hung_opens=self.hung_opens,
                  outage_s=round(self._clock() - self._failed_at, 3))
        while not self._backoff_wait(self._stop, WEDGED_WAIT_S):
            pass

    def close(self) -> None:
        self._close_current()
        self._reader.stop()
