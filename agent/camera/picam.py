"""The Raspberry Pi camera through picamera2, scaled to the model input by the ISP.

picamera2 comes from apt (python3-picamera2) and is imported only when this
source is opened. The low-resolution stream is configured at the model's
input size so the ISP does the scaling; on a Pi 4 that stream must be YUV420
and is converted here, on a Pi 5 it can be RGB. libcamera's "RGB888" arrays
are in [B, G, R] order.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import structlog

from agent.camera.convert import bgr_to_rgb, xbgr_to_rgb, yuv420_to_rgb
from agent.camera.frame import Frame
from agent.errors import CameraError

log = structlog.get_logger(__name__)

Importer = Callable[[str], ModuleType]

_INSTALL_FIX = ("sudo apt install python3-picamera2, and create the venv with "
                "--system-site-packages so it can import it")
_BUSY_FIX = ("stop the other program using it (another basketagent, rpicam-*, "
             "libcamera-*), or run `basketagent doctor` to see which")
# Formats tried for the model-size stream, best first: an RGB stream needs no conversion,
# but a Pi 4's ISP only scales to YUV420 on its low-resolution output.
_LORES_FORMATS = ("RGB888", "YUV420")


def import_picamera2(importer: Importer = importlib.import_module) -> ModuleType:
    try:
        return importer("picamera2")
    except ImportError as exc:
        raise CameraError(f"picamera2 is not installed ({exc})", fix=_INSTALL_FIX) from exc


def camera_list(module: ModuleType) -> list[dict[str, Any]]:
    try:
        return list(module.Picamera2.global_camera_info())
    except Exception as exc:  # libcamera errors have no common base class
        raise CameraError(f"libcamera could not list cameras: {exc}",
                          fix="check `rpicam-hello --list-cameras`") from exc


def describe_cameras(cameras: list[dict[str, Any]]) -> str:
    return ", ".join(f"{i}: {c.get('Model', '?')}" for i, c in enumerate(cameras))


def acquire(module: ModuleType, index: int) -> Any:
    """Picamera2(camera_num=index), with "no camera" and "busy" said plainly."""
    cameras = camera_list(module)
    if not cameras:
        raise CameraError("no camera found",
                          fix="check the ribbon cable and that `rpicam-hello --list-cameras` "
                              "lists it, or set camera.source (e.g. v4l2:/dev/video0)")
    if index >= len(cameras):
        raise CameraError(f"camera {index} not found; cameras: {describe_cameras(cameras)}",
                          fix=f"use picamera2:0 to picamera2:{len(cameras) - 1}")
    try:
        return module.Picamera2(camera_num=index)
    except (RuntimeError, OSError) as exc:
        raise CameraError(f"camera {index} ({cameras[index].get('Model', '?')}) is busy: {exc}",
                          fix=_BUSY_FIX) from exc


class Picamera2Source:
    live = True

    def __init__(self, index: int, size: tuple[int, int], *, main_size: tuple[int, int],
                 importer: Importer = importlib.import_module,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = f"picamera2:{index}"
        self._clock = clock
        self._index = 0
        module = import_picamera2(importer)
        self._camera = acquire(module, index)
        try:
            self._format, self._size = self._configure(size, main_size)
            self._camera.start()
        except CameraError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise CameraError(f"camera {index} could not be started: {exc}",
                              fix="check `rpicam-hello`; a reboot clears a wedged camera") from exc
        log.info("camera started", source=self.name, format=self._format, size=self._size)

    def _configure(self, size: tuple[int, int], main_size: tuple[int, int]) -> tuple[str, tuple]:
        # The low-resolution stream may not be larger than the main one.
        main = (max(main_size[0], size[0]), max(main_size[1], size[1]))
        last: Exception | None = None
        for fmt in _LORES_FORMATS:
            config = self._camera.create_preview_configuration(
                main={"size": main}, lores={"size": size, "format": fmt}, display=None)
            try:
                self._camera.configure(config)
            except (RuntimeError, ValueError) as exc:
                last = exc
                continue
            actual = self._camera.camera_configuration()["lores"]
            return str(actual["format"]), tuple(actual["size"])
        raise CameraError(f"the camera refused a {size[0]}x{size[1]} stream: {last}",
                          fix="use a model with a smaller input, or check the camera")

    def read(self) -> Frame | None:
        array = self._camera.capture_array("lores")
        t_mono = self._clock()
        image = self.to_rgb(array)
        frame = Frame(image=image, t_mono=t_mono, index=self._index)
        self._index += 1
        return frame

    def to_rgb(self, array: np.ndarray) -> np.ndarray:
        width, height = self._size
        if self._format == "YUV420":
            return yuv420_to_rgb(array, width, height)
        if self._format == "RGB888":  # [B, G, R] in memory
            return bgr_to_rgb(array, width)
        if self._format == "XRGB8888":  # [B, G, R, X] in memory
            return xbgr_to_rgb(array, width)
        if self._format in ("BGR888", "XBGR8888"):  # [R, G, B(, X)] in memory
            return np.ascontiguousarray(array[:, :width, :3])
        raise CameraError(f"camera stream format {self._format} is not supported")

    def close(self) -> None:
        camera, self._camera = getattr(self, "_camera", None), None
        if camera is None:
            return
        for step in ("stop", "close"):
            try:
                getattr(camera, step)()
            except Exception as exc:  # noqa: BLE001 - closing must not hide why we close
                log.warning("camera close step failed", step=step, error=str(exc))
