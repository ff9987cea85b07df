"""A folder of still images played in name order, then the end."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import structlog
from PIL import Image, UnidentifiedImageError

from agent.camera.frame import Frame
from agent.errors import CameraInputError

log = structlog.get_logger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class DirSource:
    """JPEG/PNG/BMP files of a folder in name order; an unreadable file is skipped and logged."""

    live = False

    def __init__(self, folder: Path, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not folder.exists():
            raise CameraInputError(f"image folder {folder} does not exist",
                                   fix="use dir:PATH with an existing folder")
        if not folder.is_dir():
            raise CameraInputError(f"{folder} is not a folder", fix="use video:PATH for a file")
        self.name = f"dir:{folder}"
        self._files = sorted(p for p in folder.iterdir()
                             if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self._files:
            raise CameraInputError(f"image folder {folder} has no JPEG, PNG or BMP files")
        self._clock = clock
        self._next = 0
        self._index = 0
        self.skipped: list[Path] = []

    def read(self) -> Frame | None:
        while self._next < len(self._files):
            path = self._files[self._next]
            self._next += 1
            try:
                with Image.open(path) as img:
                    image = np.asarray(img.convert("RGB"))
            except (OSError, UnidentifiedImageError, ValueError) as exc:
                self.skipped.append(path)
                log.warning("image skipped: unreadable", path=str(path), error=str(exc))
                continue
            frame = Frame(image=image, t_mono=self._clock(), index=self._index)
            self._index += 1
            return frame
        return None

    def close(self) -> None:
        self._next = len(self._files)
