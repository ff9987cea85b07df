"""The frame loop on the service's real parts.

Frames come from the synthetic camera (seeded, so its script is known) or a
folder of PNGs, through the bundled model on the CPU interpreter, into the
real BasketTracker and ViewStore, the real Journal (its file-operations seam
injects a full disk), the real Sender on a ReferenceBackend on loopback, and
the real systemd Notifier on a unix datagram socket. See runner_support for
how time is driven (by the camera, never slept).

Seed 5 in 160x160 frames, checked against ``SyntheticSource.truth`` below:
the basket is empty until a cereal box is put in (frame 24), then an apple and
a loaf go in together (frame 64). Tests that need an event at a known frame use
``basket.confirm_frames=1`` so the event comes on the first frame that shows
the product; the others keep the default hysteresis.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from PIL import Image
from runner_support import (
    STEP,
    FrameClock,
    PacedStop,
    Rig,
    build,
    wait_until,
    watchdog_frames,
)
from structlog.testing import capture_logs

from agent import paths
from agent.basket.catalog import Catalog
from agent.basket.event import ProductEvent
from agent.camera.files import DirSource
from agent.camera.synthetic import SyntheticSource
from agent.config import ModelConfig
from agent.detect.detector import open_detector
from agent.detect.types import Detector
from agent.devserver import ReferenceBackend
from agent.runner import STATUS_CHECK_S, STATUS_INTERVAL_S, UNJOURNALED_MAX

pytestmark = pytest.mark.skipif(
    not (paths.bundled_models_dir() / paths.DEMO_MODEL).exists(), reason="no bundled model")

SEED = 5
CEREAL_FRAME = 24  # 1-based frame numbers of seed 5
PAIR_FRAME = 64
IDLE_STATUS = "STATUS=0.0 fps on cpu; journal empty; not registered; backend ok"
CATALOG = Catalog.bundled()
CEREAL, APPLE, BREAD = (CATALOG.lookup(label).product_id  # type: ignore[union-attr]
                        for label in ("cereal", "apple", "bread"))


@pytest.fixture(scope="module")
def detector() -> Iterator[Detector]:
    det = open_detector(ModelConfig(device="cpu", threads=1))
    yield det
    det.close()


@pytest.fixture(scope="module")
def script(detector: Detector) -> dict[int, list[str]]:
    """Seed 5's truth per frame number, where it changes (the tests rely on it)."""
    source = SyntheticSource(SEED, detector.info.input_size)
    changes: dict[int, list[str]] = {}
    last: list[str] = []
    for n in range(1, PAIR_FRAME + 1):
        source.read()
        labels = sorted(label for label, _ in source.truth)
        if labels != last:
            changes[n] = last = labels
    return changes


def test_seed_script_is_what_the_tests_assume(script: dict[int, list[str]]) -> None:
    assert script == {CEREAL_FRAME: ["cereal"],
                      PAIR_FRAME: ["apple", "bread", "cereal"]}


@pytest.fixture
def backend() -> Iterator[ReferenceBackend]:
    with ReferenceBackend() as server:
        yield server


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as s:
        yield s


@pytest.fixture
def short_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short tmp dir: the notify socket's path must fit in 108 bytes."""
    return tmp_path_factory.mktemp("rn")


def synthetic(detector: Detector):
    return lambda clock: SyntheticSource(SEED, detector.info.input_size, clock=clock)


def seed_rig(stack: ExitStack, tmp: Path, backend: ReferenceBackend, detector: Detector,
             **kw) -> Rig:
    return build(stack, tmp, backend, detector, synthetic(detector), **kw)


def saved_frames(folder: Path, detector: Detector, numbers: list[int]) -> Path:
    """Seed 5's frames with these 1-based numbers, as PNG files (lossless) in name order."""
    folder.mkdir()
    source = SyntheticSource(SEED, detector.info.input_size)
    for n in range(1, max(numbers) + 1):
        frame = source.read()
        if n in numbers:
            Image.fromarray(frame.image).save(folder / f"f{n:04d}.png")
    return folder


# -- how the loop ends ----------------------------------------------------------------------


def test_runs_until_the_source_ends(stack, short_tmp, backend, detector) -> None:
    folder = saved_frames(short_tmp / "frames", detector, [1, 30, 31])
    rig = build(stack, short_tmp, backend, detector,
                lambda clock: DirSource(folder, clock=clock), confirm_frames=2)
    with capture_logs() as logs:
        stats = rig.loop.run()
    assert stats.frames == 3
    assert [log["frames"] for log in logs if log["event"] == "camera source ended"] == [3]
    # The cereal seen on the last two files was confirmed, journaled, and its view saved.
    assert [e.product_id for e in stats.events_log] == [CEREAL]
    assert rig.view.load() == {CEREAL: 1}


def test_max_frames_stops_an_endless_source(stack, short_tmp, backend, detector) -> None:
    rig = seed_rig(stack, short_tmp, backend, detector)
    stats = rig.loop.run(max_frames=5)
    assert stats.frames == 5
    assert rig.clock() == rig.clock.frame_time(5)  # read exactly 5 times
    assert rig.loop.source.read().index == 5


def test_a_stop_flag_set_before_the_start_reads_nothing(stack, short_tmp, backend,
                                                       detector) -> None:
    stop = threading.Event()
    stop.set()
    rig = seed_rig(stack, short_tmp, backend, detector, stop=stop)
    assert rig.loop.run().frames == 0
    assert rig.clock() == rig.clock.frame_time(0)
    assert [m.split("\n")[0] for m in rig.finish()] == ["READY=1", IDLE_STATUS, "STOPPING=1"]


def test_a_stop_flag_set_mid_run_ends_the_loop_after_that_frame(stack, short_tmp, backend,
                                                                detector) -> None:
    """As the SIGTERM handler does: the frame in hand is finished, its event kept."""
    rig = seed_rig(stack, short_tmp, backend, detector, confirm_frames=1,
                   on_event=lambda rig, event: rig.loop.stop.set())
    stats = rig.loop.run(max_frames=1000)
    assert stats.frames == CEREAL_FRAME
    assert rig.pending_ids() == [event_id for event_id, _ in rig.emitted]
    assert rig.view.load() == {CEREAL: 1}


# -- pacing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("step", "expected_wait", "fps"), [
    (0.125, 0.125, 4.0),  # a frame takes half the 0.25 s period: wait out the rest
    (0.5, 0.0, 2.0),  # frames slower than the period: no waiting, no catch-up burst
])
def test_fps_pacing_waits_on_the_stop_flag(stack, short_tmp, backend, detector, step,
                                           expected_wait, fps) -> None:
    rig = seed_rig(stack, short_tmp, backend, detector, step=step, fps=4.0, stop=PacedStop)
    stats = rig.loop.run(max_frames=8)
    assert rig.loop.stop.waits == [expected_wait] * 8
    assert stats.fps == fps
    assert rig.clock() == rig.clock.frame_time(0) + 8 * (step + expected_wait)


def test_a_stop_during_pacing_ends_the_loop_without_waiting(stack, short_tmp, backend,
                                                            detector) -> None:
    rig = seed_rig(stack, short_tmp, backend, detector, fps=4.0, stop=PacedStop,
                   confirm_frames=1, on_event=lambda rig, event: rig.loop.stop.set())
    stats = rig.loop.run(max_frames=1000)
    assert stats.frames == CEREAL_FRAME
    assert rig.loop.stop.waits == [0.125] * (CEREAL_FRAME - 1)  # none after the stop


# -- systemd --------------------------------------------------------------------------------


def test_ready_first_then_status_then_a_watchdog_ping_per_frame(stack, short_tmp, backend,
                                                               detector) -> None:
    # Frames half a watchdog interval apart: every frame may ping.
    rig = seed_rig(stack, short_tmp, backend, detector, step=0.5, watchdog_usec=1_000_000)
    rig.loop.run(max_frames=12)
    messages = rig.finish()
    assert messages[0] == f"READY=1\nMAINPID={os.getpid()}"
    assert messages.count("WATCHDOG=1") == 12
    # Pinged only from the loop, once per frame; an unchanged STATUS waits for the
    # interval (5 s = frame 10) and then carries the fps.
    interval = round(STATUS_INTERVAL_S / 0.5)
    assert list(watchdog_frames(messages))[1:] == [
        (0, IDLE_STATUS),
        (interval, "STATUS=2.0 fps on cpu; journal empty; not registered; backend ok"),
        (12, "STOPPING=1"),
    ]


def test_watchdog_pings_are_rate_limited_by_the_injected_clock(stack, short_tmp, backend,
                                                               detector) -> None:
    # WATCHDOG_USEC = 1 s: at most one ping per 0.5 s of the frame clock, frames 0.125 s apart.
    rig = seed_rig(stack, short_tmp, backend, detector, watchdog_usec=1_000_000)
    rig.loop.run(max_frames=18)
    pings = rig.finish().count("WATCHDOG=1")
    per_ping = round(0.5 / STEP)
    assert pings == math.ceil(18 / per_ping) == 5  # frames 1, 5, 9, 13, 17


def test_status_follows_delivery_changes_sooner_than_the_fps_interval(stack, short_tmp, backend,
                                                                      detector) -> None:
    """The outbox is the real sender (its thread not started): delivering the first event
    as its thread would, ``step`` registers the device, and STATUS shows the pairing code
    within STATUS_CHECK_S; an unchanged text then waits STATUS_INTERVAL_S.

    Every frame pings the watchdog (WATCHDOG_USEC=1), so the pings before a STATUS
    on the socket tell which frame sent it.
    """
    delivered_at: list[int] = []

    def deliver(rig: Rig, event: ProductEvent) -> None:
        rig.sender.step(rig.clock())
        delivered_at.append(rig.loop.stats.frames + 1)

    rig = seed_rig(stack, short_tmp, backend, detector, watchdog_usec=1, on_event=deliver)
    frames = 80
    rig.loop.run(max_frames=frames)
    status = rig.sender.status()
    assert status.device_id and status.pairing_code and not status.paired
    sent = [(n, m) for n, m in watchdog_frames(rig.finish()) if m.startswith("STATUS=")]

    confirmed = CEREAL_FRAME + 4  # default confirm_frames=5
    assert delivered_at == [confirmed, PAIR_FRAME + 4, PAIR_FRAME + 4]
    check, interval = round(STATUS_CHECK_S / STEP), round(STATUS_INTERVAL_S / STEP)
    changed = sent[1][0]
    assert confirmed <= changed < confirmed + check
    paired_line = f"journal empty; not paired, code {status.pairing_code}; backend ok"
    assert sent == [
        (0, IDLE_STATUS),
        (changed, f"STATUS=8.0 fps on cpu; {paired_line}"),
        (changed + interval, f"STATUS=8.0 fps on cpu; {paired_line}"),
    ]
    assert changed + 2 * interval > frames  # no third refresh was due
    # The events did reach the backend under the device's id.
    items = backend.basket_items(status.device_id)
    assert sorted(item["productId"] for item in items) == sorted([CEREAL, APPLE, BREAD])


def views_by_frame(rig: Rig) -> dict[int, dict[str, int]]:
    """The view file as each frame is about to be read: views[n] is what frames 1..n-1 saved."""
    views: dict[int, dict[str, int]] = {}
    rig.clock.before_read.append(
        lambda: views.__setitem__(rig.loop.stats.frames + 1, rig.view.load()))
    return views


# -- journal, view, outbox ------------------------------------------------------------------


def test_events_are_journaled_before_the_view_is_persisted(stack, short_tmp, backend,
                                                          detector) -> None:
    """At each event (after its append, before the loop persists) the view file lacks it."""
    on_disk_then: list[tuple[str, int, bool]] = []

    def check(rig: Rig, event: ProductEvent) -> None:
        journaled = event.event_id in rig.pending_ids()
        on_disk_then.append((event.product_id, rig.view.load().get(event.product_id, 0),
                             journaled))

    rig = seed_rig(stack, short_tmp, backend, detector, on_event=check)
    views = views_by_frame(rig)
    stats = rig.loop.run(max_frames=PAIR_FRAME + 6)
    # Confirmed on the 5th frame showing it (default confirm_frames), saved by that frame.
    assert views[CEREAL_FRAME + 4] == {} and views[CEREAL_FRAME + 5] == {CEREAL: 1}
    assert views[PAIR_FRAME + 4] == {CEREAL: 1}
    assert views[PAIR_FRAME + 5] == {CEREAL: 1, APPLE: 1, BREAD: 1}
    assert sorted(on_disk_then) == [(APPLE, 0, True), (BREAD, 0, True), (CEREAL, 0, True)]
    assert rig.pending_ids() == [e.event_id for e in stats.events_log]
    assert [event_id for event_id, _ in rig.emitted] == [e.event_id for e in stats.events_log]
    assert rig.view.load() == rig.tracker.confirmed == {CEREAL: 1, APPLE: 1, BREAD: 1}
    assert stats.unjournaled_dropped == 0


def test_the_outbox_is_woken_after_journaling(stack, short_tmp, backend, detector) -> None:
    """The sender's thread, registered and idle (its idle wait is 30 s of real time), delivers
    the event at once: only the loop's wake() after the append can have cut its wait short."""
    idle = threading.Event()

    def idle_wait(event: threading.Event, timeout: float) -> bool:
        idle.set()
        return event.wait(timeout)

    rig = seed_rig(stack, short_tmp, backend, detector, confirm_frames=1, sender_wait=idle_wait)
    rig.sender.start()
    assert wait_until(idle.is_set) and rig.sender.status().device_id
    stats = rig.loop.run(max_frames=CEREAL_FRAME + 2)
    [event] = stats.events_log
    assert wait_until(lambda: len(backend.basket_items()) == 1, timeout=10.0)
    assert backend.basket_items()[0]["eventId"] == event.event_id
    assert wait_until(lambda: rig.pending_ids() == [])


def test_a_full_disk_keeps_the_event_and_retries_it_every_frame(stack, short_tmp, backend,
                                                                detector) -> None:
    """The real journal fails its writes with ENOSPC (its file-operations seam) until frame
    30's time; the event made at frame 24 waits in memory, is retried on each frame, is
    journaled on frame 30, and only then is the view saved and the sender woken."""
    recover_at = FrameClock().frame_time(30)
    rig = seed_rig(stack, short_tmp, backend, detector, confirm_frames=1)
    rig.ops.fail_if = lambda data: rig.clock() < recover_at
    views = views_by_frame(rig)
    with capture_logs() as logs:
        stats = rig.loop.run(max_frames=34)
    [(event_id, made_at)] = rig.emitted
    assert made_at == rig.clock.frame_time(CEREAL_FRAME)
    retries = [log for log in logs if log["event"] == "event not journaled yet; will retry"]
    assert len(retries) == 30 - CEREAL_FRAME  # frames 24..29, once each
    assert all("no space left" in log["error"] and log["waiting"] == 1 for log in retries)
    assert [(e.event_id, at) for e, at in rig.journaled] == [(event_id, recover_at)]
    assert rig.pending_ids() == [event_id]
    assert all(views[n] == {} for n in range(1, 31))  # saved by frame 30, not before
    assert views[31] == rig.view.load() == {CEREAL: 1}
    assert stats.unjournaled_dropped == 0 and stats.events == 1


def test_the_unjournaled_backlog_is_bounded_and_drops_the_oldest(stack, short_tmp, backend,
                                                                 detector) -> None:
    """Over UNJOURNALED_MAX events while the disk is full, then space returns.

    Reaching the bound with the real tracker needs many rises: two saved frames,
    empty (frame 1) and three products (frame 64), alternate, with
    confirm_frames=release_frames=1 so every full frame adds three events and every
    empty one takes them out again (hard links: no extra decode cost per file).
    """
    folder = saved_frames(short_tmp / "frames", detector, [1, PAIR_FRAME])
    empty, full = sorted(folder.iterdir())
    pairs = UNJOURNALED_MAX // 3 + 2
    for k in range(pairs):
        os.link(full, folder / f"p{k:04d}b.png")
        os.link(empty, folder / f"p{k:04d}c.png")
    empty.unlink()
    full.unlink()
    frames = 2 * pairs
    recover_at = FrameClock().frame_time(frames)  # the last (empty) frame
    rig = build(stack, short_tmp, backend, detector, lambda clock: DirSource(folder, clock=clock),
                confirm_frames=1, release_frames=1)
    rig.ops.fail_if = lambda data: rig.clock() < recover_at
    with capture_logs() as logs:
        stats = rig.loop.run()
    assert stats.frames == frames
    emitted = [event_id for event_id, _ in rig.emitted]
    assert stats.events == len(emitted) == 3 * pairs > UNJOURNALED_MAX
    lost = stats.events - UNJOURNALED_MAX
    assert stats.unjournaled_dropped == lost
    dropped = [log["event_id"] for log in logs
               if log["event"] == "event dropped: journal unwritable too long"]
    assert dropped == emitted[:lost]
    # Space returned: the newest UNJOURNALED_MAX are journaled, in order, on the last frame.
    assert rig.pending_ids() == emitted[lost:]
    assert {at for _, at in rig.journaled} == {recover_at}
    assert rig.view.load() == {}  # ends on an empty frame


def test_the_view_on_disk_never_holds_a_rise_whose_event_is_not_journaled(
        stack, short_tmp, backend, detector) -> None:
    """The disk has room for two event records: the cereal, then one of the apple and loaf
    confirmed together. Before every frame and at the end, the saved view may hold no
    more of a product than its journaled events added: else a crash (or the stop) loses
    the unjournaled event for good, since a restart does not re-add what the view holds."""
    rig = seed_rig(stack, short_tmp, backend, detector, confirm_frames=1)
    room = [2]

    def full_after_two(data: bytes) -> bool:
        if b'"product_id"' not in data:
            return False
        room[0] -= 1
        return room[0] < 0

    rig.ops.fail_if = full_after_two
    excess: list[dict[str, int]] = []

    def check() -> None:
        added: dict[str, int] = {}
        for entry in rig.journal.pending(limit=10**6):
            added[entry.event.product_id] = added.get(entry.event.product_id, 0) \
                + entry.event.quantity
        view = rig.view.load()
        over = {p: n - added.get(p, 0) for p, n in view.items() if n > added.get(p, 0)}
        if over:
            excess.append(over)

    rig.clock.before_read.append(check)
    stats = rig.loop.run(max_frames=PAIR_FRAME + 3)
    check()
    assert stats.events == 3 and len(rig.pending_ids()) == 2
    assert excess == []


def test_the_recent_events_kept_for_callers_are_bounded() -> None:
    from collections import deque

    from agent.runner import RECENT_EVENTS, LoopStats

    stats = LoopStats()
    assert isinstance(stats.events_log, deque) and stats.events_log.maxlen == RECENT_EVENTS
