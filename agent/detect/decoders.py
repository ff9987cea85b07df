"""Output decoders and their registry: which model family a detector is, and how to read it.

A decoder is chosen at load time by inspecting the model's outputs (signature
names, shapes, dtypes); an unknown layout is a ModelError then, not on the
first frame. Every decoder returns boxes as (ymin, xmin, ymax, xmax) relative
to the model input, in [0, 1].
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from agent.detect.nms import nms

# Detections below this are noise; the tracker applies detection.min_score on top.
SCORE_FLOOR = 0.05
MAX_DETECTIONS = 100
IOU_THRESHOLD = 0.45


@dataclass(frozen=True)
class OutputSpec:
    """One output tensor as the interpreter describes it."""

    index: int  # position in get_output_details()
    name: str  # tensor name, or the signature output name when the model has a signature
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float = 0.0
    zero_point: int = 0
    from_signature: bool = False


@dataclass(frozen=True)
class RawDetections:
    boxes: np.ndarray  # [K, 4] float, (ymin, xmin, ymax, xmax) relative to the model input
    class_ids: np.ndarray  # [K] int
    scores: np.ndarray  # [K] float


class Decoder:
    """A matched layout: knows which tensor is which and turns them into detections."""

    layout = ""
    # How a frame of another aspect is fitted to the input: "stretch" (TF object detection
    # API training) or "letterbox" (Ultralytics training).
    resize = "stretch"
    # The input range a float model expects; quantized inputs say theirs in scale/zero point.
    float_range = (0.0, 1.0)
    num_classes: int | None = None  # None when the outputs do not say
    input_size: tuple[int, int] = (1, 1)  # (width, height) of the model input, set at load

    def decode(self, outputs: Sequence[np.ndarray]) -> RawDetections:
        raise NotImplementedError


def dequantize(value: np.ndarray, spec: OutputSpec) -> np.ndarray:
    if np.issubdtype(value.dtype, np.floating):
        return value.astype(np.float32, copy=False)
    if spec.scale == 0.0:
        return value.astype(np.float32)
    return (value.astype(np.float32) - spec.zero_point) * spec.scale


# --- SSD with TFLite_Detection_PostProcess ------------------------------------------------


class SsdDecoder(Decoder):
    """Post-processed SSD outputs: boxes [1,N,4], classes [1,N], scores [1,N], count [1]."""

    float_range = (-1.0, 1.0)

    def __init__(self, layout: str, boxes: OutputSpec, classes: OutputSpec,
                 scores: OutputSpec, count: OutputSpec) -> None:
        self.layout = layout
        self.specs = (boxes, classes, scores, count)

    def decode(self, outputs: Sequence[np.ndarray]) -> RawDetections:
        b, c, s, k = self.specs
        boxes = dequantize(outputs[b.index], b).reshape(-1, 4)
        classes = dequantize(outputs[c.index], c).reshape(-1)
        scores = dequantize(outputs[s.index], s).reshape(-1)
        # Only the first `count` slots are valid; the rest hold stale values.
        count = int(np.clip(dequantize(outputs[k.index], k).reshape(-1)[0], 0, len(scores)))
        boxes, classes, scores = boxes[:count], classes[:count], scores[:count]
        keep = scores >= SCORE_FLOOR
        return RawDetections(np.clip(boxes[keep], 0.0, 1.0),
                             np.rint(classes[keep]).astype(np.int64), scores[keep])


def _float_outputs(outputs: Sequence[OutputSpec]) -> bool:
    return all(o.dtype == np.float32 for o in outputs)


def _ssd_roles(outputs: Sequence[OutputSpec]) -> tuple[OutputSpec, list[OutputSpec], OutputSpec] | None:
    """Boxes, the two [1,N] tensors in output order, and count - or None if not SSD-shaped."""
    if len(outputs) != 4 or not _float_outputs(outputs):
        return None
    boxes = [o for o in outputs if len(o.shape) == 3 and o.shape[0] == 1 and o.shape[2] == 4]
    counts = [o for o in outputs if o.shape in ((1,), ())]
    if len(boxes) != 1 or len(counts) != 1:
        return None
    n = boxes[0].shape[1]
    pairs = [o for o in outputs if o.shape == (1, n)]
    if len(pairs) != 2:
        return None
    return boxes[0], pairs, counts[0]


_SIGNATURE_NAMES = {
    "boxes": ("detection_boxes", "boxes"),
    "classes": ("detection_classes", "classes"),
    "scores": ("detection_scores", "scores"),
    "count": ("num_detections", "count", "num_boxes"),
}


def match_ssd_signature(outputs: Sequence[OutputSpec], labels: Sequence[str]) -> Decoder | None:
    """A signature (TF2 export) names each output: trust the names over the order."""
    if not outputs or not all(o.from_signature for o in outputs):
        return None
    shaped = _ssd_roles(outputs)
    if shaped is None:
        return None
    by_role: dict[str, OutputSpec] = {}
    for role, names in _SIGNATURE_NAMES.items():
        found = [o for o in outputs if o.name in names]
        if len(found) != 1:
            return None
        by_role[role] = found[0]
    boxes, pairs, count = shaped
    if by_role["boxes"] is not boxes or by_role["count"] is not count:
        return None
    if {id(by_role["classes"]), id(by_role["scores"])} != {id(p) for p in pairs}:
        return None
    return SsdDecoder("ssd-signature", boxes, by_role["classes"], by_role["scores"], count)


_POSTPROCESS_NAME = re.compile(r"TFLite_Detection_PostProcess(?::(\d))?$")


def _postprocess_slot(spec: OutputSpec) -> int | None:
    found = _POSTPROCESS_NAME.search(spec.name)
    if not found:
        return None
    return int(found.group(1) or 0)


def _ssd_by_order(outputs: Sequence[OutputSpec], boxes_first: bool) -> tuple | None:
    shaped = _ssd_roles(outputs)
    if shaped is None:
        return None
    boxes, pairs, count = shaped
    # The post-process op names its outputs :0 boxes, :1 classes, :2 scores, :3 count;
    # when those names are there they decide, whatever the order.
    slots = [_postprocess_slot(p) for p in pairs]
    if slots == [1, 2] or slots == [2, 1]:
        classes, scores = (pairs[0], pairs[1]) if slots[0] == 1 else (pairs[1], pairs[0])
        is_tf1 = outputs[0] is boxes
        return (boxes, classes, scores, count) if is_tf1 == boxes_first else None
    if boxes_first and outputs[0] is boxes and outputs[3] is count:
        return boxes, pairs[0], pairs[1], count  # TF1: boxes, classes, scores, count
    if not boxes_first and outputs[1] is boxes and outputs[2] is count:
        return boxes, pairs[1], pairs[0], count  # TF2: scores, boxes, count, classes
    return None


def match_ssd_tf1(outputs: Sequence[OutputSpec], labels: Sequence[str]) -> Decoder | None:
    roles = _ssd_by_order(outputs, boxes_first=True)
    return SsdDecoder("ssd-tf1", *roles) if roles else None


def match_ssd_tf2(outputs: Sequence[OutputSpec], labels: Sequence[str]) -> Decoder | None:
    roles = _ssd_by_order(outputs, boxes_first=False)
    return SsdDecoder("ssd-tf2", *roles) if roles else None


# --- raw YOLO -----------------------------------------------------------------------------


class YoloDecoder(Decoder):
    """Raw YOLO predictions (cx, cy, w, h, [objectness], class scores...) with NMS here."""

    resize = "letterbox"
    float_range = (0.0, 1.0)

    def __init__(self, layout: str, spec: OutputSpec, num_classes: int, objectness: bool,
                 channels_first: bool) -> None:
        self.layout = layout
        self.spec = spec
        self.num_classes = num_classes
        self.objectness = objectness
        self.channels_first = channels_first

    def decode(self, outputs: Sequence[np.ndarray]) -> RawDetections:
        pred = dequantize(outputs[self.spec.index], self.spec)[0]
        if self.channels_first:
            pred = pred.T  # [4+C, N] -> [N, 4+C]
        xywh = pred[:, :4]
        if self.objectness:
            class_scores = pred[:, 5:] * pred[:, 4:5]
        else:
            class_scores = pred[:, 4:]
        class_ids = np.argmax(class_scores, axis=1)
        scores = class_scores[np.arange(len(class_ids)), class_ids]
        keep = scores >= SCORE_FLOOR
        xywh, class_ids, scores = xywh[keep], class_ids[keep], scores[keep]
        boxes = _xywh_to_yxyx(xywh)
        if len(scores) and float(np.max(np.abs(xywh))) > 2.0:
            # Most exports give fractions of the input; some give its pixels.
            width, height = self.input_size
            boxes = boxes / np.array([height, width, height, width], dtype=np.float32)
        boxes = np.clip(boxes, 0.0, 1.0)
        keep_idx = nms(boxes, scores, class_ids, IOU_THRESHOLD, MAX_DETECTIONS)
        return RawDetections(boxes[keep_idx], class_ids[keep_idx].astype(np.int64),
                             scores[keep_idx])


def _xywh_to_yxyx(xywh: np.ndarray) -> np.ndarray:
    cx, cy, w, h = xywh[:, 0], xywh[:, 1], xywh[:, 2], xywh[:, 3]
    return np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=1).astype(np.float32)


def _single_3d(outputs: Sequence[OutputSpec]) -> OutputSpec | None:
    if len(outputs) != 1:
        return None
    spec = outputs[0]
    if len(spec.shape) != 3 or spec.shape[0] != 1:
        return None
    if spec.dtype not in (np.float32, np.uint8, np.int8):
        return None
    return spec


def match_yolov8(outputs: Sequence[OutputSpec], labels: Sequence[str]) -> Decoder | None:
    """[1, 4+C, N] channels first (the Ultralytics export), or [1, N, 4+C] when labels say so."""
    spec = _single_3d(outputs)
    if spec is None:
        return None
    _, a, b = spec.shape
    if a < b and a > 4:
        return YoloDecoder("yolov8", spec, a - 4, objectness=False, channels_first=True)
    if b > 4 and b - 4 == len(labels) and b - 5 != len(labels):
        return YoloDecoder("yolov8", spec, b - 4, objectness=False, channels_first=False)
    return None


def match_yolov5(outputs: Sequence[OutputSpec], labels: Sequence[str]) -> Decoder | None:
    """[1, N, 5+C]: N anchors of (cx, cy, w, h, objectness, C class scores)."""
    spec = _single_3d(outputs)
    if spec is None:
        return None
    _, n, b = spec.shape
    if n > b > 5 and b - 4 != len(labels):
        return YoloDecoder("yolov5", spec, b - 5, objectness=True, channels_first=False)
    return None


Matcher = Callable[[Sequence[OutputSpec], Sequence[str]], Decoder | None]

# The registry: every model family this agent reads, most specific first.
DECODERS: dict[str, Matcher] = {
    "ssd-signature": match_ssd_signature,
    "ssd-tf1": match_ssd_tf1,
    "ssd-tf2": match_ssd_tf2,
    "yolov8": match_yolov8,
    "yolov5": match_yolov5,
}


def describe(outputs: Sequence[OutputSpec]) -> str:
    return ", ".join(f"{o.name or o.index} {list(o.shape)} {np.dtype(o.dtype).name}"
                     for o in outputs)


def choose_decoder(outputs: Sequence[OutputSpec], labels: Sequence[str]) -> Decoder | None:
    for matcher in DECODERS.values():
        decoder = matcher(outputs, labels)
        if decoder is not None:
            return decoder
    return None
