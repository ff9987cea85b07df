"""Measure the demo model's mAP@0.5 on held-out rendered baskets, with the real LiteRT interpreter.

    .venv/bin/python models/evaluate.py [--model PATH] [--count 500] [--json]

The held-out split (demo_data.HELD_OUT) shares no seed with training or
calibration. Detections come from agent.detect.detector.open_detector on the
CPU, exactly as the agent runs the model; no TensorFlow is involved.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# Run as a script from anywhere: the agent package and demo_data beside this file.
for _path in (str(HERE.parent), str(HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import demo_data  # noqa: E402

from agent.camera.scenes import Sample  # noqa: E402
from agent.camera.shapes import PRODUCTS  # noqa: E402
from agent.config import DetectionConfig, ModelConfig  # noqa: E402
from agent.detect.boxes import box_iou  # noqa: E402
from agent.detect.types import Detection, Detector  # noqa: E402
from agent.logs import configure_logging  # noqa: E402

IOU_MATCH = 0.5


@dataclass(frozen=True)
class Evaluation:
    map50: float  # mean over classes of AP at IoU 0.5
    ap50: dict[str, float]  # per class
    images: int
    objects: int
    detections: int
    # At the tracker's default min_score: what the basket logic actually counts.
    min_score: float = DetectionConfig().min_score
    counts_right: float = 0.0  # share of images whose per-label counts are exactly right
    extra: int = 0  # detections beyond the truth's count of their label
    missed: int = 0  # objects beyond the detections' count of their label


def average_precision(scored_hits: Sequence[tuple[float, bool]], positives: int) -> float:
    """Area under the precision/recall curve, precision made monotonic (VOC, all points)."""
    if positives == 0:
        return float("nan")
    if not scored_hits:
        return 0.0
    order = sorted(scored_hits, key=lambda sh: -sh[0])
    hits = np.array([h for _, h in order], dtype=np.float64)
    tp = np.cumsum(hits)
    fp = np.cumsum(1.0 - hits)
    recall = np.concatenate([[0.0], tp / positives, [tp[-1] / positives]])
    precision = np.concatenate([[1.0], tp / (tp + fp), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum((recall[1:] - recall[:-1]) * precision[1:]))


def match(
    detections: Sequence[Detection], truth: Sequence[tuple[str, tuple[float, ...]]]
) -> list[tuple[Detection, bool]]:
    """Each detection, best score first, against unclaimed truth of its label at IoU >= 0.5."""
    claimed = [False] * len(truth)
    out = []
    for det in sorted(detections, key=lambda d: -d.score):
        best, best_iou = -1, IOU_MATCH
        for i, (label, box) in enumerate(truth):
            if claimed[i] or label != det.label:
                continue
            iou = box_iou(det.box, box)  # type: ignore[arg-type]
            if iou >= best_iou:
                best, best_iou = i, iou
        if best >= 0:
            claimed[best] = True
        out.append((det, best >= 0))
    return out


def evaluate(
    detector: Detector, samples: Iterable[Sample], min_score: float = DetectionConfig().min_score
) -> Evaluation:
    hits: dict[str, list[tuple[float, bool]]] = {p: [] for p in PRODUCTS}
    positives = dict.fromkeys(PRODUCTS, 0)
    images = n_det = right = extra = missed = 0
    for sample in samples:
        images += 1
        truth = [
            (PRODUCTS[c], tuple(map(float, b)))
            for b, c in zip(sample.boxes, sample.class_ids, strict=True)
        ]
        for label, _ in truth:
            positives[label] += 1
        detections = detector.detect(sample.image)
        n_det += len(detections)
        wanted = Counter(label for label, _ in truth)
        counted = Counter(d.label for d in detections if d.score >= min_score)
        right += counted == wanted
        extra += sum((counted - wanted).values())
        missed += sum((wanted - counted).values())
        for det, hit in match(detections, truth):
            if det.label in hits:
                hits[det.label].append((det.score, hit))
    ap = {p: average_precision(hits[p], positives[p]) for p in PRODUCTS}
    scored = [v for v in ap.values() if not np.isnan(v)]
    return Evaluation(
        map50=float(np.mean(scored)) if scored else 0.0,
        ap50=ap,
        images=images,
        objects=sum(positives.values()),
        detections=n_det,
        min_score=min_score,
        counts_right=right / images if images else 0.0,
        extra=extra,
        missed=missed,
    )


def held_out(count: int, start: int = 0, split: int = demo_data.HELD_OUT) -> Iterable[Sample]:
    for i in range(start, start + count):
        yield demo_data.sample(split, i)


def open_model(path: Path | None, threads: int = 0) -> Detector:
    from agent.detect.detector import open_detector

    config = ModelConfig(device="cpu", path=str(path) if path else "", threads=threads)
    return open_detector(config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled model")
    parser.add_argument("--count", type=int, default=500, help="held-out images")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--validation", action="store_true", help="the validation split instead of held-out"
    )
    args = parser.parse_args(argv)
    configure_logging("warning", "plain")  # to stderr: stdout is the result
    detector = open_model(args.model, args.threads)
    try:
        split = demo_data.VALIDATION if args.validation else demo_data.HELD_OUT
        result = evaluate(detector, held_out(args.count, split=split))
    finally:
        detector.close()
    if args.json:
        print(json.dumps(asdict(result), indent=2))
    else:
        print(f"mAP@0.5 {result.map50:.4f} on {result.images} images, {result.objects} objects")
        for label, value in result.ap50.items():
            print(f"  {label:<8} AP@0.5 {value:.4f}")
        print(
            f"at min_score {result.min_score:.2f}: counts right in {result.counts_right:.1%} "
            f"of images; {result.extra} extra, {result.missed} missed detections"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
