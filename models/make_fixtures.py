"""Build the small fixture models under models/fixtures/ (decoder and runtime tests).

    /work/venv-train/bin/python models/make_fixtures.py

Every fixture sees a 64x64 RGB image as a 4x4 grid of 16x16 cells and "detects"
each cell whose colour is pure red, green or blue (classes 0, 1, 2 = labels
red, green, blue), with that cell as the box. The weights are set by hand, so
a known image gives known outputs; expected.json lists them for each fixture
and the input that produces them. See fixtures/README.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import tensorflow as tf  # noqa: E402
import tflite_tools  # noqa: E402
from tensorflow.lite.python import schema_py_generated as schema  # noqa: E402
from tensorflow.lite.tools import flatbuffer_utils  # noqa: E402

OUT = HERE / "fixtures"
SIZE = 64
CELLS = 4
CELL = SIZE // CELLS
LABELS = ("red", "green", "blue")
C = len(LABELS)
GAIN = 6.0  # class logit per unit of channel mean in [-1, 1]
OBJ_WEIGHT, OBJ_BIAS = 2.0, 4.0  # YOLOv5 objectness logit: 2 * (r + g + b) + 4
SSD_SCORE_THRESHOLD = 0.3
EDGETPU_OP = "edgetpu-custom-op"

# The test image: black, with coloured cells at (row, col).
TEST_CELLS = {(1, 2): 0, (3, 0): 2, (0, 0): 1}


def test_image() -> np.ndarray:
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    for (row, col), cls in TEST_CELLS.items():
        image[row * CELL : (row + 1) * CELL, col * CELL : (col + 1) * CELL, cls] = 255
    return image


def cell_box(row: int, col: int) -> list[float]:
    """(ymin, xmin, ymax, xmax) of a cell, normalised."""
    return [row / CELLS, col / CELLS, (row + 1) / CELLS, (col + 1) / CELLS]


def _sigmoid(x: float) -> float:
    return float(1 / (1 + np.exp(-x)))


def representative(rng_seed: int = 0):
    """Black, white, single-colour cells and random pictures: every range the graph sees."""

    def gen():
        rng = np.random.default_rng(rng_seed)
        yield [np.full((1, SIZE, SIZE, 3), -1.0, np.float32)]
        yield [np.full((1, SIZE, SIZE, 3), 1.0, np.float32)]
        for _ in range(40):
            image = np.zeros((SIZE, SIZE, 3), np.uint8)
            for row in range(CELLS):
                for col in range(CELLS):
                    if rng.random() < 0.5:
                        cell = image[row * CELL : (row + 1) * CELL, col * CELL : (col + 1) * CELL]
                        cell[..., int(rng.integers(C))] = 255
            yield [image[None].astype(np.float32) / 127.5 - 1.0]

    return gen


# --- shared building blocks -------------------------------------------------------------


class Grid(tf.Module):
    """Per-cell channel means in [-1, 1] -> class logits, objectness logits and cell boxes."""

    def __init__(self) -> None:
        super().__init__()
        self.class_kernel = tf.Variable(np.eye(3, C, dtype=np.float32)[None, None] * GAIN)
        self.obj_kernel = tf.Variable(np.full((1, 1, 3, 1), OBJ_WEIGHT, np.float32))
        self.obj_bias = tf.Variable(np.full((1,), OBJ_BIAS, np.float32))
        centres = (np.arange(CELLS, dtype=np.float32) + 0.5) / CELLS
        cy, cx = np.meshgrid(centres, centres, indexing="ij")
        xywh = np.stack([cx, cy, np.full_like(cx, 1 / CELLS), np.full_like(cy, 1 / CELLS)], -1)
        self.xywh = tf.Variable(xywh.reshape(1, CELLS * CELLS, 4))
        # Real exports compute boxes from features; a zero-weight path keeps that shape here.
        self.box_kernel = tf.Variable(np.zeros((1, 1, 3, 4), np.float32))

    def means(self, image: tf.Tensor) -> tf.Tensor:
        return tf.nn.avg_pool2d(image, CELL, CELL, "VALID")  # [1, 4, 4, 3]

    def class_logits(self, means: tf.Tensor) -> tf.Tensor:
        return tf.reshape(tf.nn.conv2d(means, self.class_kernel, 1, "VALID"), [1, -1, C])

    def objectness(self, means: tf.Tensor) -> tf.Tensor:
        logit = tf.nn.conv2d(means, self.obj_kernel, 1, "VALID") + self.obj_bias
        return tf.sigmoid(tf.reshape(logit, [1, -1, 1]))

    def boxes_xywh(self, means: tf.Tensor) -> tf.Tensor:
        delta = tf.reshape(tf.nn.conv2d(means, self.box_kernel, 1, "VALID"), [1, -1, 4])
        return self.xywh + delta


IMAGE = tf.TensorSpec([1, SIZE, SIZE, 3], tf.float32)


def _anchors() -> np.ndarray:
    centres = (np.arange(CELLS, dtype=np.float32) + 0.5) / CELLS
    cy, cx = np.meshgrid(centres, centres, indexing="ij")
    side = np.full_like(cy, 1 / CELLS)
    return np.stack([cy, cx, side, side], -1).reshape(-1, 4)


def ssd(order: tuple[str, ...], signature: bool) -> bytes:
    grid = Grid()
    anchors = tf.constant(_anchors())
    post = tflite_tools.detection_postprocess(
        C, max_detections=10, score_threshold=SSD_SCORE_THRESHOLD
    )

    @tf.function
    def serve(image):
        means = grid.means(image)
        # Encodings are (ty, tx, th, tw) offsets from the anchor: zero, so boxes are the cells.
        encodings = tf.reshape(tf.nn.conv2d(means, grid.box_kernel, 1, "VALID"), [1, -1, 4])
        return post(encodings, tf.sigmoid(grid.class_logits(means)), anchors)

    tflite = tflite_tools.convert(
        grid, serve, IMAGE, representative(), input_type=tf.uint8, custom_ops=True
    )
    return tflite_tools.rewrite_ssd(tflite, order, signature=signature)


def yolov5() -> bytes:
    grid = Grid()

    @tf.function
    def serve(image):
        means = grid.means(image)
        scores = tf.sigmoid(grid.class_logits(means))
        return tf.concat([grid.boxes_xywh(means), grid.objectness(means), scores], axis=-1)

    tflite = tflite_tools.convert(
        grid, serve, IMAGE, representative(), input_type=tf.uint8, output_type=tf.uint8
    )
    return tflite_tools.drop_signatures(tflite)


def yolov8() -> bytes:
    grid = Grid()

    @tf.function
    def serve(image):
        means = grid.means(image)
        scores = tf.sigmoid(grid.class_logits(means))
        rows = tf.concat([grid.boxes_xywh(means), scores], axis=-1)  # [1, N, 4+C]
        return tf.transpose(rows, [0, 2, 1])  # [1, 4+C, N], as Ultralytics exports

    tflite = tflite_tools.convert(
        grid, serve, IMAGE, representative(), input_type=tf.int8, output_type=tf.int8
    )
    return tflite_tools.drop_signatures(tflite)


def classifier() -> bytes:
    grid = Grid()

    @tf.function
    def serve(image):
        means = tf.reduce_mean(image, axis=[1, 2])  # [1, 3]
        return tf.nn.softmax(means @ grid.class_kernel[0, 0])  # [1, C]

    tflite = tflite_tools.convert(
        grid, serve, IMAGE, representative(), input_type=tf.uint8, output_type=tf.uint8
    )
    return tflite_tools.drop_signatures(tflite)


def edgetpu_compiled(ssd_tf1: bytes) -> bytes:
    """The TF1 SSD as edgetpu_compiler lays it out: one edgetpu-custom-op, then the CPU tail.

    Everything before the DEQUANTIZE ops that feed the post-processing op is replaced by a
    single custom op from the image to the tensors they read. Without an Edge TPU this model
    cannot run; it is for recognising a compiled file.
    """
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(ssd_tf1))
    graph = model.subgraphs[0]
    names = tflite_tools.op_names(ssd_tf1)
    first_tail = names.index("DEQUANTIZE")
    tail = graph.operators[first_tail:]
    if names[first_tail:] != ["DEQUANTIZE", "DEQUANTIZE", tflite_tools.POSTPROCESS_OP]:
        raise ValueError(f"unexpected tail: {names[first_tail:]}")
    code = schema.OperatorCodeT()
    code.builtinCode = schema.BuiltinOperator.CUSTOM
    code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = EDGETPU_OP.encode()
    code.version = 1
    model.operatorCodes.append(code)
    op = schema.OperatorT()
    op.opcodeIndex = len(model.operatorCodes) - 1
    op.inputs = list(graph.inputs)
    op.outputs = [tail[0].inputs[0], tail[1].inputs[0]]
    op.customOptions = list(b"\x00" * 8)  # the compiled program would live here
    graph.operators = [op] + tail
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


# --- expected outputs -------------------------------------------------------------------


def expected() -> dict:
    detections = []
    for (row, col), cls in sorted(TEST_CELLS.items()):
        detections.append({"class_id": cls, "label": LABELS[cls], "box": cell_box(row, col)})
    class_score = _sigmoid(GAIN)  # the cell's own channel is +1, so logit GAIN
    objectness = _sigmoid(OBJ_WEIGHT * -1.0 + OBJ_BIAS)  # one channel +1, two -1
    return {
        "labels": list(LABELS),
        # Outputs are quantized: compare scores and box corners within these.
        "score_tolerance": 0.01,
        "box_tolerance": 0.01,
        "input": {
            "size": [SIZE, SIZE],
            "description": "black 64x64 RGB image; a 16x16 cell at (row, col) filled with "
            "255 in one channel is detected with that cell as its box",
            "file": "test_image.png",
            "cells": [{"row": r, "col": c, "channel": k} for (r, c), k in TEST_CELLS.items()],
        },
        "detections": detections,
        "fixtures": {
            "ssd_tf2_order.tflite": {
                "layout": "ssd-tf2",
                "outputs": ["scores [1,10]", "boxes [1,10,4]", "count [1]", "classes [1,10]"],
                "input": "uint8 [1,64,64,3]",
                "score": class_score,
                "count": len(TEST_CELLS),
                "black_image_count": 0,
            },
            "ssd_signature.tflite": {
                "layout": "ssd-signature",
                "signature": "serving_default",
                "outputs": [
                    "detection_boxes",
                    "detection_classes",
                    "detection_scores",
                    "num_detections",
                ],
                "input": "uint8 [1,64,64,3]",
                "score": class_score,
                "count": len(TEST_CELLS),
                "black_image_count": 0,
            },
            "ssd_tf1_order.tflite": {
                "layout": "ssd-tf1",
                "outputs": ["boxes [1,10,4]", "classes [1,10]", "scores [1,10]", "count [1]"],
                "input": "uint8 [1,64,64,3]",
                "score": class_score,
                "count": len(TEST_CELLS),
                "black_image_count": 0,
            },
            "yolov5_uint8.tflite": {
                "layout": "yolov5",
                "outputs": ["uint8 [1,16,8]: cx, cy, w, h (fractions), objectness, 3 classes"],
                "input": "uint8 [1,64,64,3]",
                "score": class_score * objectness,
                "objectness": objectness,
                "class_score": class_score,
            },
            "yolov8_int8.tflite": {
                "layout": "yolov8",
                "outputs": ["int8 [1,7,16]: cx, cy, w, h (fractions), 3 classes"],
                "input": "int8 [1,64,64,3]",
                "score": class_score,
            },
            "classifier.tflite": {
                "layout": None,
                "outputs": ["uint8 [1,3] softmax"],
                "input": "uint8 [1,64,64,3]",
            },
            "edgetpu_ssd.tflite": {
                "layout": "ssd-tf1",
                "edgetpu_compiled": True,
                "custom_ops": [EDGETPU_OP, tflite_tools.POSTPROCESS_OP],
                "runs_without_edgetpu": False,
            },
        },
    }


def main() -> int:
    OUT.mkdir(exist_ok=True)
    tf.keras.utils.set_random_seed(0)
    tf1 = ssd(tflite_tools.POSTPROCESS_OUTPUTS, signature=False)
    models = {
        "ssd_tf1_order.tflite": tf1,
        "ssd_tf2_order.tflite": ssd(tflite_tools.TF2_ORDER, signature=False),
        "ssd_signature.tflite": ssd(tflite_tools.TF2_ORDER, signature=True),
        "yolov5_uint8.tflite": yolov5(),
        "yolov8_int8.tflite": yolov8(),
        "classifier.tflite": classifier(),
        "edgetpu_ssd.tflite": edgetpu_compiled(tf1),
    }
    for name, data in models.items():
        (OUT / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes; ops {', '.join(tflite_tools.op_names(data))}")
    (OUT / "labels.txt").write_text("\n".join(LABELS) + "\n")
    (OUT / "expected.json").write_text(json.dumps(expected(), indent=2) + "\n")
    Image.fromarray(test_image()).save(OUT / "test_image.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
