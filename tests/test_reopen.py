"""A live camera that fails mid-run is reopened with capped backoff; bad frames are skipped."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from structlog.testing import capture_logs

from agent.camera.frame import Frame
from agent.camera.reopen import MAX_BAD_FRAMES, BoundedCaller, ReopeningSource
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


def make(opener, sleeps, cap=4.0, wait=None):
    kwargs = {"wait": wait} if wait else {}
    return ReopeningSource(opener, "cam", backoff_max_s=cap, read_timeout_s=5.0,
                           clock=lambda: 0.0, sleep=sleeps.append, **kwargs)


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
    release = threading.Event()
    healthy = ScriptedCamera([GOOD])
    calls = []

    def opener():
        calls.append(1)
        if len(calls) == 2:
            release.wait(30)  # the reopen hangs inside the driver
        return healthy

    waits = []

    def wait(event, timeout):
        waits.append(timeout)
        return len(waits) != 4 and event.wait(10)  # the 2nd open's wait times out

    sleeps: list[float] = []
    source = ReopeningSource(opener, "cam", backoff_max_s=4.0, read_timeout_s=5.0,
                             clock=lambda: 0.0, sleep=sleeps.append, wait=wait)
    healthy.script.insert(0, CameraError("lost"))
    try:
        with capture_logs() as logs:
            frame = source.read()
    finally:
        release.set()
    assert frame.index == 0 and len(calls) == 3 and sleeps == [0.5, 1.0]
    failed = [e["error"] for e in logs if e["event"] == "camera reopen failed"]
    assert len(failed) == 1
    assert failed[0].startswith("no answer for opening the camera within 5 s")
