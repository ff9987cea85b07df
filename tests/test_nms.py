"""Class-aware greedy NMS."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

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


@st.composite
def detections(draw):
    n = draw(st.integers(0, 25))
    coords = st.floats(0.0, 1.0, allow_nan=False, width=32)
    boxes = []
    for _ in range(n):
        y0, y1 = sorted((draw(coords), draw(coords)))
        x0, x1 = sorted((draw(coords), draw(coords)))
        boxes.append([y0, x0, y1, x1])
    scores = [draw(st.floats(0.05, 1.0)) for _ in range(n)]
    classes = [draw(st.integers(0, 2)) for _ in range(n)]
    return (np.array(boxes, np.float32).reshape(n, 4), np.array(scores, np.float32),
            np.array(classes, np.int64))


@settings(max_examples=60, deadline=None)
@given(detections())
def test_nms_properties(dets):
    boxes, scores, classes = dets
    keep = nms(boxes, scores, classes, 0.45, 100)
    assert len(set(keep.tolist())) == len(keep)
    assert list(scores[keep]) == sorted(scores[keep], reverse=True)
    for i, a in enumerate(keep):
        for b in keep[i + 1:]:
            if classes[a] == classes[b]:
                assert iou_one_to_many(boxes[a], boxes[b][None])[0] <= 0.45 + 1e-6
    # Every dropped box overlaps a kept box of its class with a score at least its own.
    for d in set(range(len(scores))) - set(keep.tolist()):
        same = [k for k in keep if classes[k] == classes[d] and scores[k] >= scores[d]]
        assert same and max(iou_one_to_many(boxes[d], boxes[same])) > 0.45
