"""Class-aware greedy NMS."""

from __future__ import annotations

import numpy as np

from agent.detect.nms import iou_one_to_many, nms


def test_iou_values():
    box = np.array([0.0, 0.0, 0.5, 0.5])
    others = np.array([[0.0, 0.0, 0.5, 0.5], [0.0, 0.25, 0.5, 0.75], [0.6, 0.6, 0.9, 0.9]])
    np.testing.assert_allclose(iou_one_to_many(box, others), [1.0, 1 / 3, 0.0], atol=1e-6)


def test_overlapping_same_class_suppressed_best_first():
    boxes = np.array([[0.1, 0.1, 0.5, 0.5], [0.12, 0.1, 0.52, 0.5], [0.6, 0.6, 0.9, 0.9]])
    scores = np.array([0.6, 0.9, 0.7])
    keep = nms(boxes, scores, np.array([0, 0, 0]), 0.45, 10)
    assert keep.tolist() == [1, 2]


def test_other_class_not_suppressed():
    boxes = np.array([[0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.5]])
    keep = nms(boxes, np.array([0.9, 0.8]), np.array([0, 1]), 0.45, 10)
    assert keep.tolist() == [0, 1]


def test_max_keep_and_empty():
    boxes = np.array([[0.0, i / 10, 0.05, i / 10 + 0.05] for i in range(10)])
    keep = nms(boxes, np.linspace(0.1, 1.0, 10), np.zeros(10, int), 0.45, 3)
    assert keep.tolist() == [9, 8, 7]
    assert nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), 0.45, 3).tolist() == []
