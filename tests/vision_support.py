"""Scoring a detector against the synthetic camera's truth, shared by the model tests."""

from __future__ import annotations

from collections.abc import Sequence

from agent.camera.synthetic import SyntheticSource
from agent.detect.boxes import Box, box_iou
from agent.detect.types import Detection, Detector

IOU_MATCH = 0.5


def claimed_truth(detections: Sequence[Detection], truth: Sequence[tuple[str, Box]]) -> int:
    """How many truth objects the detections find: best score first, each claimed once."""
    claimed: set[int] = set()
    for det in sorted(detections, key=lambda d: -d.score):
        for i, (label, box) in enumerate(truth):
            if i not in claimed and label == det.label and box_iou(det.box, box) >= IOU_MATCH:
                claimed.add(i)
                break
    return len(claimed)


def score_frames(detector: Detector, source: SyntheticSource, frames: int, every: int,
                 min_score: float) -> tuple[int, int, int]:
    """(truth objects, matched, detections at min_score) over every ``every``-th clear frame."""
    objects = matched = found = 0
    for index in range(frames):
        frame = source.read()
        if index % every or source.occluded:
            continue
        detections = [d for d in detector.detect(frame.image) if d.score >= min_score]
        truth = source.truth
        objects += len(truth)
        matched += claimed_truth(detections, truth)
        found += len(detections)
    return objects, matched, found
