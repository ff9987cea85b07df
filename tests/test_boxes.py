"""Box overlap."""

from __future__ import annotations

import pytest

from agent.detect.boxes import box_iou


def test_box_iou() -> None:
    assert box_iou((0, 0, 1, 1), (0, 0, 1, 1)) == pytest.approx(1.0)
    assert box_iou((0, 0, 0.5, 0.5), (0.5, 0.5, 1, 1)) == 0.0
    assert box_iou((0, 0, 0.5, 1), (0, 0, 1, 1)) == pytest.approx(0.5)
    assert box_iou((0.2, 0.2, 0.2, 0.2), (0.2, 0.2, 0.2, 0.2)) == 0.0
