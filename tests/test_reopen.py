"""A live camera that fails mid-run is reopened with capped backoff; bad frames are skipped."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from structlog.testing import capture_logs

from agent.camera.frame import Frame
from agent.camera.reopen import (
    HEARTBEAT_EVERY_S,
    MAX_BAD_FRAMES,
    MAX_HUNG_OPENS,
    WEDGED_WAIT_S,
    BoundedCaller,
    ReopeningSource,
    backoff_delay,
)
from agent.errors import CameraError, CameraInputError

GOOD = np.zeros((4, 6, 3), np.uint8)


class ScriptedCamera:
    """Plays a script: arrays are frames, exceptions are raised, None is an empty read."""

    def __init__(self, script):
        self.script = list(script)
        self.closed = False

    def read(self):
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        if item is None:
            return None
        return Frame(image=item, t_mono=1.0, index=99)

    def close(self):
        self.closed = True


class Opener:
    """Hands out cameras in order; an exception in the list is raised by that open."""

    def __init__(self, *cameras):
        self.cameras = list(cameras)
        self.opened = []

    def __call__(self):
        item = self.cameras.pop(0)
        if isinstance(item, BaseException):
            raise item
        self.opened.append(item)
        return item


class Backoff:
    """Records the backoff delays instead of waiting them out; sets stop after ``stop_after``."""

    def __init__(self, stop_after: int | None = None):
        self.delays: list[float] = []
        self.stop_after = stop_after

    def __call__(self, stop: threading.Event, delay: float) -> bool:
        self.delays.append(delay)
        if len(self.delays) == self.stop_after:
            stop.set()  # SIGTERM arrives while the camera is out
        return stop.is_set()


def make(opener, sleeps, cap=4.0, wait=None, stop=None):
    kwargs = {"wait": wait} if wait else {}
    backoff = Backoff()
    backoff.delays = sleeps
    return ReopeningSource(opener, "cam", backoff_max_s=cap, read_timeout_s=5.0,
                           clock=lambda: 0.0, backoff_wait=backoff, stop=stop, **kwargs)


def test_failure_mid_run_reopens_with_capped_backoff():
    first = ScriptedCamera([GOOD, CameraError("USB unplugged")])
    second = ScriptedCamera([GOOD, GOOD])
    opener = Opener(first, CameraError("gone"), CameraError("gone"), CameraError("gone"),
                    CameraError("gone"), second)
    sleeps: list[float] = []
    source = make(opener, sleeps, cap=3.0)
    assert source.read().index == 0
    frame = source.read()  # the camera fails, five reopen attempts, then a frame
    assert frame.index == 1 and first.closed
    assert sleeps == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert source.reopens == 1 and opener.opened == [first, second]
    assert source.read().index == 2


def test_first_open_failure_is_not_retried():
    sleeps: list[float] = []
    with pytest.raises(CameraError, match="no camera"):
        make(Opener(CameraError("no camera")), sleeps)
    assert sleeps == []


def test_non_camera_error_on_reopen_propagates():
    opener = Opener(ScriptedCamera([CameraError("lost")]), CameraInputError("bad spec"))
    source = make(opener, [])
    with pytest.raises(CameraInputError):
        source.read()


def test_one_bad_frame_is_skipped():
    camera = ScriptedCamera([GOOD, None, np.zeros((4, 6), np.uint8), ValueError("bad YUV buffer"),
                             np.zeros((4, 6, 3), np.float32), GOOD])
    sleeps: list[float] = []
    source = make(Opener(camera), sleeps)
    assert source.read().index == 0
    with capture_logs() as logs:
        assert source.read().index == 1
    assert source.bad_frames == 4 and source.reopens == 0 and sleeps == []
    errors = [e["error"] for e in logs if e["event"] == "bad camera frame skipped"]
    assert errors == ["", "", "ValueError: bad YUV buffer", ""]


def test_many_bad_frames_in_a_row_reopen_the_camera():
    broken = ScriptedCamera([None] * MAX_BAD_FRAMES)
    healthy = ScriptedCamera([GOOD])
    sleeps: list[float] = []
    source = make(Opener(broken, healthy), sleeps)
    assert source.read().index == 0
    assert broken.closed and source.reopens == 1 and sleeps == [0.5]


def test_read_that_never_returns_is_bounded():
    release = threading.Event()

    class Stuck:
        closed = False

        def read(self):
            release.wait(30)

        def close(self):
            self.closed = True

    stuck, healthy = Stuck(), ScriptedCamera([GOOD])
    waited = []

    def wait(event: threading.Event, timeout: float) -> bool:
        waited.append(timeout)
        if len(waited) == 2:
            return False  # the first read (after the open) times out, without waiting 5 s
        return event.wait(10)

    source = make(Opener(stuck, healthy), [], wait=wait)
    try:
        frame = source.read()
    finally:
        release.set()
    assert frame.index == 0 and source.reopens == 1
    assert waited[1] == 5.0 and stuck.closed  # closed on a fresh worker, not behind the stuck one


def test_bounded_caller_passes_results_and_errors():
    caller = BoundedCaller(1.0)
    assert caller.call(lambda: 42) == 42
    with pytest.raises(ZeroDivisionError):
        caller.call(lambda: 1 / 0)
    caller.stop()


def test_close_closes_the_camera():
    camera = ScriptedCamera([GOOD])
    source = make(Opener(camera), [])
    source.close()
    assert camera.closed


def test_open_that_hangs_is_bounded():
    release, hanging = threading.Event(), threading.Event()
    healthy = ScriptedCamera([GOOD])
    calls_per_worker: dict[int, int] = {}

    def opener():
        worker = threading.get_ident()
        calls_per_worker[worker] = calls_per_worker.get(worker, 0) + 1
        if calls_per_worker[worker] == 2:  # the first worker's reopen hangs inside the driver
            hanging.set()
            release.wait(30)
        return healthy

    waits = []

    def wait(event, timeout):
        waits.append(timeout)
        if len(waits) == 4:  # open, read, close, then the reopen: it times out
            assert hanging.wait(10)  # given up only once the worker is inside the hung call
            return False
        return event.wait(10)

    sleeps: list[float] = []
    source = make(opener, sleeps, wait=wait)
    healthy.script.insert(0, CameraError("lost"))
    try:
        with capture_logs() as logs:
            frame = source.read()
    finally:
        release.set()
    assert frame.index == 0 and sleeps == [0.5, 1.0]
    assert sorted(calls_per_worker.values()) == [1, 2]  # the reopen ran on a fresh worker
    failed = [e["error"] for e in logs if e["event"] == "camera reopen failed"]
    assert len(failed) == 1
    assert failed[0].startswith("no answer for opening the camera within 5 s")


def test_stop_during_an_outage_ends_the_source():
    first = ScriptedCamera([GOOD, CameraError("USB unplugged")])
    opener = Opener(first, *[CameraError("gone")] * 3)
    stop = threading.Event()
    backoff = Backoff(stop_after=3)
    source = ReopeningSource(opener, "cam", backoff_max_s=30.0, read_timeout_s=5.0,
                             clock=lambda: 0.0, backoff_wait=backoff, stop=stop)
    assert source.read().index == 0
    with capture_logs() as logs:
        assert source.read() is None  # the third backoff wait sees stop: no fourth open
    assert backoff.delays == [0.5, 1.0, 2.0] and len(opener.cameras) == 1
    assert source.reopens == 0 and first.closed
    assert [e["event"] for e in logs].count("camera source stopping") == 1
    assert source.read() is None  # stays ended
    source.close()


def test_stop_already_set_returns_none_without_reading():
    camera = ScriptedCamera([GOOD])
    stop = threading.Event()
    source = make(Opener(camera), [], stop=stop)
    stop.set()
    assert source.read() is None and camera.script == [GOOD]


@pytest.mark.parametrize("attempt", [0, 1, 5, 1023, 1024, 1100, 5000, 100_000])
def test_backoff_delay_never_overflows(attempt):
    assert 0 < backoff_delay(attempt, 30.0) <= 30.0
    assert backoff_delay(attempt, 1e300) == min(0.5 * 2.0 ** min(attempt, 40), 1e300)


def test_outage_of_thousands_of_attempts_keeps_the_cap():
    attempts = 3000
    first = ScriptedCamera([GOOD, CameraError("USB unplugged")])
    second = ScriptedCamera([GOOD])
    opener = Opener(first, *[CameraError("gone")] * attempts, second)
    sleeps: list[float] = []
    source = make(opener, sleeps, cap=30.0)
    assert source.read().index == 0
    assert source.read().index == 1
    assert len(sleeps) == attempts + 1 and sleeps[:7] == [0.5, 1, 2, 4, 8, 16, 30]
    assert set(sleeps[6:]) == {30.0} and source.reopens == 1


class FakeTime:
    """A monotonic clock that only the backoff waits move."""

    def __init__(self):
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def backoff(self, stop: threading.Event, delay: float) -> bool:
        self.waits.append(delay)
        self.now += delay
        return stop.is_set()


def test_heartbeat_keeps_coming_through_a_long_outage():
    failures = 9  # backoff 0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30 s: over two minutes
    first = ScriptedCamera([GOOD, CameraError("USB unplugged")])
    second = ScriptedCamera([GOOD])
    time_ = FakeTime()
    beats: list[float] = []
    source = ReopeningSource(Opener(first, *[CameraError("gone")] * failures, second), "cam",
                             backoff_max_s=30.0, read_timeout_s=5.0, clock=time_.clock,
                             backoff_wait=time_.backoff, heartbeat=lambda: beats.append(time_.now))
    assert source.read().index == 0
    assert beats == []  # a healthy camera leaves the pinging to the frame loop
    with capture_logs() as logs:
        assert source.read().index == 1
    assert time_.now == sum(backoff_delay(n, 30.0) for n in range(failures + 1)) > 120
    assert max(time_.waits) <= HEARTBEAT_EVERY_S
    gaps = [b - a for a, b in zip([0.0, *beats], beats + [time_.now])]
    assert max(gaps) <= HEARTBEAT_EVERY_S
    assert beats[-1] == time_.now  # once more after the successful reopen
    levels = {e["event"]: e["log_level"] for e in logs}
    assert levels["camera lost; reopening"] == levels["camera back"] == "warning"
    back = [e for e in logs if e["event"] == "camera back"]
    assert back[0]["outage_s"] == time_.now and back[0]["attempt"] == failures + 1


def test_heartbeat_through_the_systemd_watchdog(tmp_path):
    import socket

    from agent.systemd import Notifier

    address = str(tmp_path / "notify")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.setblocking(False)
    time_ = FakeTime()
    pings: list[float] = []
    notifier = Notifier.from_env({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "30000000"},
                                 clock=time_.clock)

    def heartbeat():
        notifier.watchdog()  # rate-limits itself to one ping per 15 s
        try:
            sent = listener.recv(100)
        except BlockingIOError:
            return
        assert sent == b"WATCHDOG=1"
        pings.append(time_.now)

    first = ScriptedCamera([GOOD, CameraError("USB unplugged")])
    source = ReopeningSource(Opener(first, *[CameraError("gone")] * 7, ScriptedCamera([GOOD])),
                             "cam", backoff_max_s=30.0, read_timeout_s=5.0, clock=time_.clock,
                             backoff_wait=time_.backoff, heartbeat=heartbeat)
    source.read()
    try:
        assert source.read().index == 1
    finally:
        listener.close()
    gaps = [b - a for a, b in zip(pings, pings[1:] + [time_.now])]
    assert time_.now > 90 and len(pings) >= 6 and max(gaps) < 30


def test_no_heartbeat_while_a_read_hangs():
    release, reading = threading.Event(), threading.Event()

    class Stuck:
        closed = False

        def read(self):
            reading.set()
            release.wait(30)

        def close(self):
            self.closed = True

    beats: list[str] = []
    calls: list[float] = []
    beats_during_hang: list[int] = []

    def wait(event: threading.Event, timeout: float) -> bool:
        calls.append(timeout)
        if len(calls) == 2:  # the first read: the camera hangs until read_timeout_s passes
            assert reading.wait(10)
            beats_during_hang.append(len(beats))
            return False
        return event.wait(10)

    healthy = ScriptedCamera([GOOD])
    time_ = FakeTime()
    source = ReopeningSource(Opener(Stuck(), healthy), "cam", backoff_max_s=30.0,
                             read_timeout_s=5.0, clock=time_.clock, wait=wait,
                             backoff_wait=time_.backoff, heartbeat=lambda: beats.append("beat"))
    try:
        frame = source.read()
    finally:
        release.set()
    assert beats_during_hang == [0]  # nothing pinged while the read hung
    assert frame.index == 0 and source.reopens == 1 and len(beats) >= 2  # the reopen pinged


def test_without_heartbeat_the_backoff_is_one_wait():
    time_ = FakeTime()
    first = ScriptedCamera([GOOD, CameraError("lost")])
    source = ReopeningSource(Opener(first, *[CameraError("gone")] * 5, ScriptedCamera([GOOD])),
                             "cam", backoff_max_s=30.0, read_timeout_s=5.0, clock=time_.clock,
                             backoff_wait=time_.backoff)
    source.read()
    source.read()
    assert time_.waits == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]


HANG = object()


class WedgingDriver:
    """An opener whose HANG entries block inside the driver until released, plus the call
    ``wait`` that gives up on exactly the calls numbered in ``hang_at`` (1-based, in the order
    the source makes them) once the worker is inside the hung open."""

    def __init__(self, script, hang_at):
        self.script = list(script)
        self.hang_at = set(hang_at)
        self.calls = 0
        self.waits = 0
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()

    def opener(self):
        self.calls += 1
        item = self.script.pop(0)
        if item is HANG:
            self.entered.release()
            self.release.wait(30)
            return ScriptedCamera([GOOD])
        if isinstance(item, BaseException):
            raise item
        return item

    def wait(self, event: threading.Event, timeout: float) -> bool:
        self.waits += 1
        if self.waits in self.hang_at:
            assert self.entered.acquire(timeout=10)  # given up only once the open is stuck
            return False
        assert event.wait(10), f"call {self.waits} was expected to answer"
        return True


class WedgedTime(FakeTime):
    """FakeTime whose backoff sets ``stop`` after ``stop_after`` waits on a wedged driver."""

    def __init__(self, stop_after: int):
        super().__init__()
        self.stop_after = stop_after

    def backoff(self, stop: threading.Event, delay: float) -> bool:
        if self.waits.count(WEDGED_WAIT_S) + (delay == WEDGED_WAIT_S) == self.stop_after:
            stop.set()  # SIGTERM, or the watchdog's restart
        return super().backoff(stop, delay)


def test_hung_opens_stop_the_heartbeat_and_the_attempts():
    # calls: open, read, read (fails), close, then every reopen hangs
    driver = WedgingDriver([ScriptedCamera([GOOD, CameraError("lost")]), *[HANG] * 5],
                           hang_at={5, 6, 7})
    time_ = WedgedTime(stop_after=4)
    beats: list[float] = []
    source = ReopeningSource(driver.opener, "cam", backoff_max_s=30.0, read_timeout_s=5.0,
                             clock=time_.clock, wait=driver.wait, backoff_wait=time_.backoff,
                             heartbeat=lambda: beats.append(time_.now))
    try:
        assert source.read().index == 0
        with capture_logs() as logs:
            assert source.read() is None  # ends only when stop is set
    finally:
        driver.release.set()
    assert driver.calls == 1 + MAX_HUNG_OPENS and source.hung_opens == MAX_HUNG_OPENS
    assert time_.waits[-4:] == [WEDGED_WAIT_S] * 4
    wedged_at = time_.now - 4 * WEDGED_WAIT_S
    assert beats and beats[-1] <= wedged_at  # no ping once the driver is taken as wedged
    errors = [e for e in logs if e["log_level"] == "error"]
    assert [e["event"] for e in errors] == [
        "camera driver not answering: leaving it to the watchdog to restart the agent"]
    assert errors[0]["hung_opens"] == MAX_HUNG_OPENS
    hung = [e["hung"] for e in logs if e["event"] == "camera reopen failed"]
    assert hung == [True] * MAX_HUNG_OPENS
    assert source.read() is None and driver.calls == 1 + MAX_HUNG_OPENS  # stays ended
    source.close()


def test_stop_ends_a_read_waiting_on_a_wedged_driver():
    driver = WedgingDriver([ScriptedCamera([CameraError("lost")]), *[HANG] * MAX_HUNG_OPENS],
                           hang_at={4, 5, 6})
    wedged = threading.Event()
    stop = threading.Event()

    def backoff(event: threading.Event, delay: float) -> bool:
        if delay != WEDGED_WAIT_S:
            return event.is_set()
        wedged.set()
        return event.wait(delay)  # a real wait on the stop flag, ended by setting it

    source = ReopeningSource(driver.opener, "cam", backoff_max_s=30.0, read_timeout_s=5.0,
                             clock=lambda: 0.0, wait=driver.wait, backoff_wait=backoff,
                             stop=stop, heartbeat=lambda: None)
    result: list[object] = []
    reader = threading.Thread(target=lambda: result.append(source.read()), daemon=True)
    try:
        reader.start()
        assert wedged.wait(10)
        stop.set()
        reader.join(10)
    finally:
        driver.release.set()
    assert not reader.is_alive() and result == [None]
    assert driver.calls == 1 + MAX_HUNG_OPENS
    source.close()


def test_clean_failures_between_hung_opens_neither_count_nor_reset():
    gone = CameraError("gone")
    # calls: open, read, close, reopens: hang, fail, hang, fail, fail, hang
    driver = WedgingDriver([ScriptedCamera([CameraError("lost")]), HANG, gone, HANG, gone, gone,
                            HANG, ScriptedCamera([GOOD])], hang_at={4, 6, 9})
    time_ = WedgedTime(stop_after=1)
    source = ReopeningSource(driver.opener, "cam", backoff_max_s=30.0, read_timeout_s=5.0,
                             clock=time_.clock, wait=driver.wait, backoff_wait=time_.backoff,
                             heartbeat=lambda: None)
    try:
        assert source.read() is None
    finally:
        driver.release.set()
    assert driver.calls == 7 and source.hung_opens == MAX_HUNG_OPENS and source.reopens == 0
    assert len(driver.script) == 1  # the healthy camera was never asked for


def test_a_successful_reopen_resets_the_hung_count():
    first = ScriptedCamera([CameraError("lost")])
    second = ScriptedCamera([GOOD, CameraError("lost again")])
    third = ScriptedCamera([GOOD])
    # calls: open, read, close, hang, hang, open ok, read, read (fails), close, hang, hang, open ok,
    # read: four hung opens in all, never three in a row without a success between
    driver = WedgingDriver([first, HANG, HANG, second, HANG, HANG, third],
                           hang_at={4, 5, 10, 11})
    time_ = WedgedTime(stop_after=1)  # were the driver taken as wedged, read() would end
    beats: list[float] = []
    source = ReopeningSource(driver.opener, "cam", backoff_max_s=30.0, read_timeout_s=5.0,
                             clock=time_.clock, wait=driver.wait, backoff_wait=time_.backoff,
                             heartbeat=lambda: beats.append(time_.now))
    try:
        with capture_logs() as logs:
            frames = [source.read(), source.read()]
    finally:
        driver.release.set()
    assert [None if f is None else f.index for f in frames] == [0, 1]
    assert source.reopens == 2 and source.hung_opens == 0 and driver.calls == 7
    assert WEDGED_WAIT_S not in time_.waits and beats[-1] == time_.now
    assert not [e for e in logs if e["log_level"] == "error"]


def test_cleanly_failing_opens_keep_pinging_forever():
    failures = 500
    first = ScriptedCamera([GOOD, CameraError("USB unplugged")])
    time_ = FakeTime()
    beats: list[float] = []
    source = ReopeningSource(Opener(first, *[CameraError("gone")] * failures,
                                    ScriptedCamera([GOOD])),
                             "cam", backoff_max_s=30.0, read_timeout_s=5.0, clock=time_.clock,
                             backoff_wait=time_.backoff, heartbeat=lambda: beats.append(time_.now))
    assert source.read().index == 0
    assert source.read().index == 1
    assert time_.now > 4 * 3600 and source.hung_opens == 0 and source.reopens == 1
    gaps = [b - a for a, b in zip(beats, beats[1:] + [time_.now])]
    assert max(gaps) <= HEARTBEAT_EVERY_S
