"""The seam between the detector and the basket logic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Detection:
    """One detected object.

    ``box`` is (ymin, xmin, ymax, xmax), each normalised to [0, 1] of the frame,
    the order TFLite's SSD post-processing uses. ``label`` is the model's label
    text for ``class_id`` (empty when the label file has none).
    """

    class_id: int
    label: str
    score: float
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class DetectorInfo:
    """What was loaded, for logs, status and doctor."""

    model_path: str
    device: str  # "edgetpu" or "cpu"
    input_size: tuple[int, int]  # (width, height)
    layout: str  # decoder name, e.g. "ssd-tf1", "yolov8"
    fallback_reason: str = ""  # why auto did not use the Edge TPU, if it did not


class Detector(Protocol):
    info: DetectorInfo

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Detections for one HxWx3 uint8 RGB image, any size."""
        ...

    def close(self) -> None: ...
