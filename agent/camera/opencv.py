"""USB webcams (V4L2) and video files through OpenCV, the optional `webcam` extra."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import structlog

from agent.camera.convert import bgr_to_rgb
from agent.camera.frame import Frame
from agent.errors import CameraError, CameraInputError

log = structlog.get_logger(__name__)

Importer = Callable[[str], ModuleType]


def import_cv2(importer: Importer = importlib.import_module) -> ModuleType:
    try:
        return importer("cv2")
    except ImportError as exc:
        raise CameraInputError(
            "OpenCV is not installed, which webcams and video files need",
            fix="pip install 'basketagent[webcam]' (opencv-python-headless)") from exc


class _CaptureSource:
    """An open cv2.VideoCapture yielding RGB frames."""

    def __init__(self, name: str, capture: Any, live: bool,
                 clock: Callable[[], float]) -> None:
        self.name = name
        self.live = live
        self._capture = capture
        self._clock = clock
        self._index = 0

    def read(self) -> Frame | None:
        if self._capture is None:
            return None
        ok, image = self._capture.read()
        t_mono = self._clock()
        if not ok or image is None:
            return None
        frame = Frame(image=bgr_to_rgb(np.asarray(image)), t_mono=t_mono, index=self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()


def open_video(path: Path, *, importer: Importer = importlib.import_module,
               clock: Callable[[], float] = time.monotonic) -> _CaptureSource:
    if not path.is_file():
        raise CameraInputError(f"video file {path} does not exist",
                               fix="use video:PATH with an existing file")
    cv2 = import_cv2(importer)
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise CameraInputError(f"video file {path} cannot be decoded",
                               fix="use a format OpenCV reads, e.g. MP4 (H.264) or AVI (MJPEG)")
    return _CaptureSource(f"video:{path}", capture, live=False, clock=clock)


def open_v4l2(device: str, width: int, height: int, *,
              importer: Importer = importlib.import_module,
              clock: Callable[[], float] = time.monotonic) -> _CaptureSource:
    if not Path(device).exists():
        raise CameraError(f"webcam {device} not found",
                          fix="plug the webcam in and check `v4l2-ctl --list-devices`")
    cv2 = import_cv2(importer)
    capture = cv2.VideoCapture(device, cv2.CAP_V4L2)
    if not capture.isOpened():
        capture.release()
        raise CameraError(f"webcam {device} cannot be opened (busy, or not a capture device)",
                          fix="stop the other program using it, or pick another /dev/videoN")
    capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
    capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
    # Keep one buffer so a slow detector reads a fresh frame, not a queued old one.
    capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    log.info("webcam opened", device=device, width=width, height=height)
    return _CaptureSource(f"v4l2:{device}", capture, live=True, clock=clock)
