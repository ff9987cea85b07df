"""The picamera2 adapter against a stand-in picamera2 module (no Pi camera here)."""

from __future__ import annotations

import numpy as np
import pytest
from camera_fakes import FakeCameraWorld, fake_picamera2_module, importer_for

from agent.camera.picam import Picamera2Source
from agent.errors import EXIT_HARDWARE, CameraError

SIZE = (64, 48)


def scene() -> np.ndarray:
    image = np.zeros((48, 64, 3), np.uint8)
    image[:, :32] = (255, 0, 0)  # left half red
    image[:, 32:] = (0, 0, 255)  # right half blue
    return image


def open_with(world: FakeCameraWorld, index: int = 0, main=(640, 480)) -> Picamera2Source:
    importer = importer_for(picamera2=fake_picamera2_module(world))
    return Picamera2Source(index, SIZE, main_size=main, importer=importer, clock=lambda: 12.5)


def test_pi4_lores_is_yuv420_at_the_model_size_and_converted():
    world = FakeCameraWorld(pi4=True, image=scene(), lores_stride_pad=64)
    source = open_with(world)
    camera = world.opened[0]
    assert camera.tried == ["RGB888", "YUV420"]
    assert camera.configured["lores"] == {"size": SIZE, "format": "YUV420"}
    assert camera.configured["main"] == {"size": (640, 480)}
    frame = source.read()
    assert frame.image.shape == (48, 64, 3) and frame.t_mono == 12.5 and frame.index == 0
    assert np.abs(frame.image[:, :30].astype(int) - (255, 0, 0)).max() <= 2
    assert np.abs(frame.image[:, 34:].astype(int) - (0, 0, 255)).max() <= 2
    assert source.read().index == 1


def test_pi5_rgb888_is_bgr_in_memory():
    world = FakeCameraWorld(pi4=False, image=scene())
    source = open_with(world)
    assert world.opened[0].tried == ["RGB888"]
    frame = source.read()
    assert frame.image[0, 0].tolist() == [255, 0, 0]  # red stays red
    assert frame.image[0, 63].tolist() == [0, 0, 255]


def test_main_stream_grows_to_hold_the_lores_stream():
    world = FakeCameraWorld(image=scene())
    open_with(world, main=(32, 480))
    assert world.opened[0].configured["main"]["size"] == (64, 480)


def test_close_stops_and_closes_once():
    world = FakeCameraWorld(image=scene())
    source = open_with(world)
    source.close()
    source.close()
    camera = world.opened[0]
    assert camera.stopped and camera.closed


def test_picamera2_not_installed():
    with pytest.raises(CameraError, match="picamera2 is not installed") as caught:
        Picamera2Source(0, SIZE, main_size=(640, 480), importer=importer_for())
    assert "apt install python3-picamera2" in str(caught.value)
    assert caught.value.exit_code == EXIT_HARDWARE


def test_no_camera():
    with pytest.raises(CameraError, match="no camera found") as caught:
        open_with(FakeCameraWorld(cameras=()))
    assert caught.value.exit_code == EXIT_HARDWARE


def test_camera_index_out_of_range():
    with pytest.raises(CameraError, match="camera 2 not found; cameras: 0: imx708"):
        open_with(FakeCameraWorld(image=scene()), index=2)


def test_busy_camera():
    world = FakeCameraWorld(busy=True)
    with pytest.raises(CameraError, match="camera 0 \\(imx708\\) is busy") as caught:
        open_with(world)
    assert "stop the other program" in str(caught.value)
    assert world.opened == []


def test_libcamera_listing_fails():
    world = FakeCameraWorld(image=scene())
    module = fake_picamera2_module(world)

    def broken():
        raise OSError("libcamera: pipeline handler failed")

    module.Picamera2.global_camera_info = staticmethod(broken)
    with pytest.raises(CameraError, match="could not list cameras: libcamera"):
        Picamera2Source(0, SIZE, main_size=(640, 480), importer=importer_for(picamera2=module))


def test_stream_refused_in_every_format_closes_the_camera():
    world = FakeCameraWorld(image=scene())
    module = fake_picamera2_module(world)

    def refuse(self, config):
        self.tried.append(config["lores"]["format"])
        raise RuntimeError("Invalid lores size")

    module.Picamera2.configure = refuse
    with pytest.raises(CameraError, match="refused a 64x48 stream: Invalid lores size"):
        Picamera2Source(0, SIZE, main_size=(640, 480), importer=importer_for(picamera2=module))
    camera = world.opened[0]
    assert camera.tried == ["RGB888", "YUV420"] and camera.closed


def test_start_failure_is_a_camera_error_and_closes():
    world = FakeCameraWorld(image=scene())
    module = fake_picamera2_module(world)

    def fail(self):
        raise TimeoutError("Camera frontend has timed out!")

    module.Picamera2.start = fail
    with pytest.raises(CameraError, match="could not be started: Camera frontend has timed out"):
        Picamera2Source(0, SIZE, main_size=(640, 480), importer=importer_for(picamera2=module))
    assert world.opened[0].closed


@pytest.mark.parametrize("fmt,pixel,expected", [
    ("XRGB8888", [255, 0, 0, 255], [0, 0, 255]),  # [B, G, R, X] in memory
    ("XBGR8888", [255, 0, 0, 255], [255, 0, 0]),  # [R, G, B, X]
    ("BGR888", [0, 255, 0], [0, 255, 0]),  # [R, G, B]
])
def test_other_rgb_formats(fmt, pixel, expected):
    raw = np.tile(np.array(pixel, np.uint8), (48, 64, 1))
    source = open_with(FakeCameraWorld(pi4=False, actual_format=fmt, raw=raw))
    frame = source.read()
    assert frame.image.shape == (48, 64, 3) and frame.image[5, 5].tolist() == expected


def test_unknown_format_is_a_camera_error():
    raw = np.zeros((48, 64), np.uint16)
    source = open_with(FakeCameraWorld(pi4=False, actual_format="SBGGR10", raw=raw))
    with pytest.raises(CameraError, match="format SBGGR10 is not supported"):
        source.read()
