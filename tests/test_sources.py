"""open_source and probe_camera: the spec registry, wrapping, and plain errors."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from camera_fakes import FakeCameraWorld, fake_picamera2_module, importer_for
from PIL import Image

from agent.camera.reopen import ReopeningSource
from agent.camera.sources import SOURCES, open_source, parse_spec, probe_camera
from agent.config import CameraConfig
from agent.errors import EXIT_BAD_INPUT, EXIT_HARDWARE, CameraError, CameraInputError

CONFIG = CameraConfig(reopen_backoff_max_s=2.0, read_timeout_s=1.0)


def test_registry_is_a_literal_mapping():
    assert list(SOURCES) == ["picamera2", "v4l2", "video", "dir", "synthetic"]


@pytest.mark.parametrize("spec", ["", "camera", "rtsp://x", "picamera", "synthetic-1"])
def test_unknown_spec(spec):
    with pytest.raises(CameraInputError, match="unknown camera source") as caught:
        open_source(spec, CONFIG, size=(64, 64))
    assert caught.value.exit_code == EXIT_BAD_INPUT


@pytest.mark.parametrize("spec,match", [
    ("synthetic:x", "seed must be a number"), ("picamera2:-1", "camera number must be"),
    ("dir:", "needs a path"), ("video:", "needs a path"), ("v4l2:video0", "not a device path"),
])
def test_bad_arguments(spec, match):
    with pytest.raises(CameraInputError, match=match):
        open_source(spec, CONFIG, size=(64, 64))


def test_synthetic_at_the_model_size_with_seed():
    source = open_source("synthetic:7", CONFIG, size=(96, 80), clock=lambda: 3.0)
    frame = source.read()
    assert source.name == "synthetic:7" and source.live is False
    assert frame.image.shape == (80, 96, 3) and frame.t_mono == 3.0
    again = open_source("synthetic:7", CONFIG, size=(96, 80)).read()
    assert np.array_equal(frame.image, again.image)
    assert parse_spec("synthetic") == ("synthetic", "")


def test_dir_source(tmp_path):
    Image.fromarray(np.zeros((5, 7, 3), np.uint8)).save(tmp_path / "0.png")
    source = open_source(f"dir:{tmp_path}", CONFIG, size=(64, 64))
    assert source.read().image.shape == (5, 7, 3)
    assert source.read() is None


def test_picamera2_is_wrapped_and_reopened_after_failure():
    world = FakeCameraWorld(image=np.zeros((48, 64, 3), np.uint8))
    importer = importer_for(picamera2=fake_picamera2_module(world))
    sleeps: list[float] = []

    def backoff_wait(stop, delay):
        sleeps.append(delay)
        return stop.is_set()

    source = open_source("picamera2:0", CONFIG, size=(64, 48), backoff_wait=backoff_wait,
                         importer=importer)
    assert isinstance(source, ReopeningSource) and source.live and source.name == "picamera2:0"
    assert source.read().image.shape == (48, 64, 3)
    first = world.opened[0]
    world.image = None  # the next capture fails inside the fake camera
    frame_error = []

    def capture_fails(name="main"):
        frame_error.append(name)
        world.image = np.zeros((48, 64, 3), np.uint8)
        raise CameraError("frontend timeout")

    first.capture_array = capture_fails
    assert source.read().index == 1
    assert frame_error == ["lores"] and first.closed and len(world.opened) == 2
    assert sleeps == [0.5]
    source.close()
    assert world.opened[1].closed


def test_stop_is_passed_to_the_live_camera():
    world = FakeCameraWorld(image=np.zeros((48, 64, 3), np.uint8))
    importer = importer_for(picamera2=fake_picamera2_module(world))
    stop = threading.Event()
    waited: list[tuple[threading.Event, float]] = []

    def backoff_wait(event, delay):
        waited.append((event, delay))
        stop.set()  # the service is told to stop while the camera is out
        return event.is_set()

    source = open_source("picamera2:0", CONFIG, size=(64, 48), backoff_wait=backoff_wait,
                         stop=stop, importer=importer)
    assert source.read().index == 0

    def capture_fails(name="main"):
        raise CameraError("frontend timeout")

    world.opened[0].capture_array = capture_fails
    assert source.read() is None
    assert waited == [(stop, 0.5)] and len(world.opened) == 1 and world.opened[0].closed
    source.close()


def test_heartbeat_is_passed_to_the_live_camera():
    world = FakeCameraWorld(image=np.zeros((48, 64, 3), np.uint8))
    importer = importer_for(picamera2=fake_picamera2_module(world))
    events: list[str] = []

    def backoff_wait(stop, delay):
        events.append(f"wait {delay:g}")
        return stop.is_set()

    source = open_source("picamera2:0", CONFIG, size=(64, 48), backoff_wait=backoff_wait,
                         importer=importer, heartbeat=lambda: events.append("beat"))
    assert source.read().index == 0 and events == []

    def capture_fails(name="main"):
        raise CameraError("frontend timeout")

    world.opened[0].capture_array = capture_fails
    assert source.read().index == 1
    # The 0.5 s backoff, then the reopen attempt, each with a heartbeat before it (and one after).
    assert events == ["beat", "wait 0.5", "beat", "beat"] and len(world.opened) == 2
    source.close()


def test_picamera2_missing_at_start_is_hardware_error():
    importer = importer_for(picamera2=fake_picamera2_module(FakeCameraWorld(cameras=())))
    with pytest.raises(CameraError, match="no camera found") as caught:
        open_source("picamera2", CONFIG, size=(64, 48), importer=importer)
    assert caught.value.exit_code == EXIT_HARDWARE


def test_v4l2_without_opencv():
    with pytest.raises(CameraInputError, match="OpenCV is not installed"):
        open_source("v4l2:/dev/video0", CONFIG, size=(64, 48), importer=importer_for())


def test_probe_picamera2_free_busy_missing():
    world = FakeCameraWorld(image=np.zeros((48, 64, 3), np.uint8))
    importer = importer_for(picamera2=fake_picamera2_module(world))
    assert probe_camera("picamera2", importer=importer) == (
        True, "camera 0 is free; cameras: 0: imx708")
    assert world.opened[0].closed
    world.busy = True
    ok, detail = probe_camera("picamera2:0", importer=importer)
    assert not ok and "is busy" in detail
    world.cameras = []
    ok, detail = probe_camera("picamera2", importer=importer)
    assert (ok, detail.startswith("no camera found")) == (False, True)
    ok, detail = probe_camera("picamera2", importer=importer_for())
    assert not ok and "picamera2 is not installed" in detail


def test_probe_other_sources(tmp_path):
    assert probe_camera("synthetic:1") == (True, "synthetic:1 gives 320x240 frames")
    ok, detail = probe_camera(f"dir:{tmp_path}")
    assert not ok and "has no JPEG" in detail
    ok, detail = probe_camera("v4l2:/dev/video-none")
    assert not ok and "not found" in detail
    ok, detail = probe_camera("bogus")
    assert not ok and "unknown camera source" in detail
