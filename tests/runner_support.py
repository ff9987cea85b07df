"""The frame loop's tests wire the service's real parts; this module builds them.

Time: one ``FrameClock`` is the monotonic clock of the loop, the notifier, the
journal, the client and the sender. The camera moves it: each frame read takes
``step`` seconds (the source is given ``clock.tick`` as its clock), so fps,
watchdog rate limits and STATUS cadence are exact and nothing sleeps.

systemd is a real unix datagram socket read by a thread. Linux queues only
``net.unix.max_dgram_qlen`` (10) datagrams and the notifier never blocks, so
each frame read first waits (bounded) until the reader has taken every
datagram: the loop can never outrun the listener and lose a ping.
"""

from __future__ import annotations

import random
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from journal_support import FlakyOps

from agent.basket.catalog import Catalog
from agent.basket.event import ProductEvent
from agent.basket.tracker import BasketTracker
from agent.basket.view_store import ViewStore
from agent.camera.frame import FrameSource
from agent.clock import uuid7
from agent.config import Config, build_config
from agent.delivery.client import BackendClient
from agent.delivery.identity import IdentityStore
from agent.delivery.journal import Journal
from agent.delivery.sender import Sender
from agent.detect.types import Detector
from agent.devserver import ReferenceBackend
from agent.runner import FrameLoop
from agent.systemd import Notifier

START = 1000.0
STEP = 0.125  # a power of two: sums of steps are exact, so cadences land on whole frames
BOUND_S = 5.0  # the longest any wait on a real thread may take


class FrameClock:
    """Monotonic time that only the camera moves: each read takes ``step`` seconds."""

    def __init__(self, step: float = STEP, start: float = START) -> None:
        self.now = start
        self.step = step
        self.before_read: list[Callable[[], None]] = []

    def __call__(self) -> float:
        return self.now

    def tick(self) -> float:
        """The source's clock: called once per frame, it is the frame's capture."""
        for hook in self.before_read:
            hook()
        self.now += self.step
        return self.now

    def frame_time(self, n: int) -> float:
        """When frame number ``n`` (1-based) is captured."""
        return START + n * self.step


class PacedStop(threading.Event):
    """A real stop flag whose timed wait passes on the FrameClock instead of sleeping.

    ``set()``/``is_set()`` are the real Event's; a wait on a set flag returns at once.
    """

    def __init__(self, clock: FrameClock) -> None:
        super().__init__()
        self.clock = clock
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        if self.is_set():
            return True
        assert timeout is not None, "the loop must never wait without a bound"
        self.waits.append(timeout)
        self.clock.now += timeout
        return self.is_set()


class NotifyListener:
    """systemd's side of NOTIFY_SOCKET: a datagram socket and a thread that reads it."""

    def __init__(self, directory: Path) -> None:
        # AF_UNIX paths are limited to 108 bytes: keep it short.
        self.path = directory / "notify"
        assert len(str(self.path)) < 100, self.path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self.path))
        self._sock.settimeout(BOUND_S)
        self.messages: list[str] = []
        self._thread = threading.Thread(target=self._read, name="notify-listener", daemon=True)
        self._thread.start()

    def env(self, watchdog_usec: int | None) -> dict[str, str]:
        env = {"NOTIFY_SOCKET": str(self.path)}
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        return env

    def _read(self) -> None:
        while True:
            try:
                message = self._sock.recv(4096).decode()
            except OSError:  # timed out, or closed
                return
            self.messages.append(message)
            if message == "STOPPING=1":
                return

    def drained(self) -> None:
        """Wait (bounded) until no datagram is queued: the reader has taken them all."""
        deadline = time.monotonic() + BOUND_S
        pause = threading.Event()
        while select.select([self._sock], [], [], 0)[0]:
            assert time.monotonic() < deadline, "the notify listener stopped reading"
            pause.wait(0.0005)

    def finish(self, notifier: Notifier) -> list[str]:
        """Send STOPPING=1 (the last message) and return everything received."""
        notifier.stopping()
        self._thread.join(BOUND_S)
        assert not self._thread.is_alive(), "STOPPING=1 never arrived"
        return list(self.messages)

    def close(self) -> None:
        if self._thread.is_alive():  # wake the reader: closing does not end a blocked recv
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"STOPPING=1", str(self.path))
            self._thread.join(BOUND_S)
        self._sock.close()


def config(state_dir: Path, url: str, **basket: int) -> Config:
    return build_config(flags={
        "backend": {"url": url, "connect_timeout_s": 2.0, "read_timeout_s": 2.0},
        "state": {"dir": str(state_dir)},
        "basket": basket,
    })


@dataclass
class Rig:
    """The service's data path, every part real, on one FrameClock."""

    clock: FrameClock
    config: Config
    ops: FlakyOps
    journal: Journal
    view: ViewStore
    tracker: BasketTracker
    sender: Sender
    notifier: Notifier
    listener: NotifyListener
    loop: FrameLoop
    emitted: list[tuple[str, float]] = field(default_factory=list)  # (event_id, clock) per event
    journaled: list[tuple[ProductEvent, float]] = field(default_factory=list)  # via on_event

    def finish(self) -> list[str]:
        return self.listener.finish(self.notifier)

    def pending_ids(self) -> list[str]:
        return [entry.event.event_id for entry in self.journal.pending(limit=10**6)]


def build(stack: ExitStack, tmp: Path, backend: ReferenceBackend, detector: Detector,
          make_source: Callable[[Callable[[], float]], FrameSource], *,
          step: float = STEP, watchdog_usec: int | None = None, fps: float = 0.0,
          stop: threading.Event | Callable[[FrameClock], threading.Event] | None = None,
          on_event: Callable[[Rig, ProductEvent], None] | None = None,
          sender_wait: Any = None, **basket: int) -> Rig:
    """Wire source -> detector -> tracker -> journal -> sender (not started) -> notifier."""
    clock = FrameClock(step)
    state = tmp / "state"
    cfg = config(state, backend.url, **basket)
    ops = FlakyOps()
    journal = stack.enter_context(Journal.open(state, cfg.journal, ops=ops, clock=clock))
    client = BackendClient(cfg.backend, cfg.delivery, clock=clock)
    stack.callback(client.close)
    sender = Sender(journal, client, IdentityStore(state, backend_url=backend.url), cfg,
                    clock=clock, rng=random.Random(7), wait=sender_wait)
    stack.callback(sender.stop, BOUND_S)
    listener = NotifyListener(tmp)
    stack.callback(listener.close)
    notifier = Notifier.from_env(listener.env(watchdog_usec), clock)
    stack.callback(notifier.close)
    clock.before_read.append(listener.drained)
    emitted: list[tuple[str, float]] = []

    def new_event_id() -> str:
        event_id = uuid7()
        emitted.append((event_id, clock()))
        return event_id

    view = ViewStore(state / "view.json")
    tracker = BasketTracker(Catalog.bundled(), cfg.basket, cfg.detection, cfg.routing, view,
                            clock_synced=lambda: True, new_event_id=new_event_id)
    source = make_source(clock.tick)
    stack.callback(source.close)
    rig: Rig

    def journaled(event: ProductEvent) -> None:
        rig.journaled.append((event, clock()))
        if on_event is not None:
            on_event(rig, event)

    flag = stop(clock) if callable(stop) else stop
    loop = FrameLoop(source, detector, tracker, journal, sender, notifier, fps=fps, stop=flag,
                     clock=clock, on_event=journaled)
    rig = Rig(clock, cfg, ops, journal, view, tracker, sender, notifier, listener, loop,
              emitted=emitted)
    return rig


def watchdog_frames(messages: list[str]) -> Iterator[tuple[int, str]]:
    """Each non-WATCHDOG message with the number of WATCHDOG pings that came before it."""
    pings = 0
    for message in messages:
        if message == "WATCHDOG=1":
            pings += 1
        else:
            yield pings, message


def wait_until(predicate: Callable[[], bool], timeout: float = BOUND_S) -> bool:
    """Poll a real thread's progress, bounded; never used to wait out a timer."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while time.monotonic() < deadline:
        if predicate():
            return True
        pause.wait(0.005)
    return predicate()
