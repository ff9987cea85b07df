"""The seam between the camera and the detector."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One RGB frame.

    ``image`` is HxWx3 uint8 in RGB order; ``t_mono`` is ``time.monotonic()``
    when the frame was captured; ``index`` counts frames from 0 for this source.
    """

    image: np.ndarray
    t_mono: float
    index: int


class FrameSource(Protocol):
    """Yields frames until it ends (``None``) or fails (raises ``CameraError``)."""

    name: str
    live: bool  # a live camera paces itself; file and synthetic sources do not

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...
