"""The decoder registry: layouts chosen from names, shapes and dtypes; decoded values."""

from __future__ import annotations

import numpy as np
import pytest

from agent.detect import decoders
from agent.detect.decoders import DECODERS, OutputSpec, choose_decoder

F32 = np.dtype(np.float32)
LABELS3 = ("apple", "banana", "milk")


def spec(i, name, shape, dtype=F32, scale=0.0, zp=0, sig=False):
    return OutputSpec(i, name, tuple(shape), np.dtype(dtype), scale, zp, sig)


def ssd_tf1_specs(n=10):
    return [spec(0, "TFLite_Detection_PostProcess", (1, n, 4)),
            spec(1, "TFLite_Detection_PostProcess:1", (1, n)),
            spec(2, "TFLite_Detection_PostProcess:2", (1, n)),
            spec(3, "TFLite_Detection_PostProcess:3", (1,))]


def test_registry_is_a_literal_mapping():
    assert list(DECODERS) == ["ssd-signature", "ssd-tf1", "ssd-tf2", "yolov8", "yolov5"]


def test_ssd_tf1_by_postprocess_names():
    decoder = choose_decoder(ssd_tf1_specs(), LABELS3)
    assert decoder.layout == "ssd-tf1"
    boxes, classes, scores, count = decoder.specs
    assert (boxes.index, classes.index, scores.index, count.index) == (0, 1, 2, 3)


def test_ssd_tf2_order_unnamed():
    outs = [spec(0, "Identity", (1, 10)), spec(1, "Identity_1", (1, 10, 4)),
            spec(2, "Identity_2", (1,)), spec(3, "Identity_3", (1, 10))]
    decoder = choose_decoder(outs, LABELS3)
    assert decoder.layout == "ssd-tf2"
    boxes, classes, scores, count = decoder.specs
    assert (boxes.index, classes.index, scores.index, count.index) == (1, 3, 0, 2)


def test_postprocess_names_win_over_order():
    # Boxes first but classes/scores swapped in position: the :1/:2 names decide.
    outs = ssd_tf1_specs()
    outs[1], outs[2] = (spec(1, "TFLite_Detection_PostProcess:2", (1, 10)),
                        spec(2, "TFLite_Detection_PostProcess:1", (1, 10)))
    decoder = choose_decoder(outs, LABELS3)
    _, classes, scores, _ = decoder.specs
    assert (classes.index, scores.index) == (2, 1)


def test_signature_names_decide():
    outs = [spec(0, "detection_scores", (1, 10), sig=True),
            spec(1, "detection_classes", (1, 10), sig=True),
            spec(2, "num_detections", (1,), sig=True),
            spec(3, "detection_boxes", (1, 10, 4), sig=True)]
    decoder = choose_decoder(outs, LABELS3)
    assert decoder.layout == "ssd-signature"
    boxes, classes, scores, count = decoder.specs
    assert (boxes.index, classes.index, scores.index, count.index) == (3, 1, 0, 2)


def test_ssd_decode_reads_only_count_slots_and_floors_scores():
    decoder = choose_decoder(ssd_tf1_specs(4), LABELS3)
    boxes = np.array([[[0.1, 0.2, 0.5, 0.6], [-0.1, 0.0, 1.2, 0.5],
                       [0.3, 0.3, 0.4, 0.4], [0.0, 0.0, 1.0, 1.0]]], np.float32)
    classes = np.array([[2, 0, 1, 1]], np.float32)
    scores = np.array([[0.9, 0.5, 0.01, 0.99]], np.float32)  # slot 3 is stale
    raw = decoder.decode([boxes, classes, scores, np.array([3.0], np.float32)])
    assert raw.class_ids.tolist() == [2, 0]
    np.testing.assert_allclose(raw.scores, [0.9, 0.5])
    np.testing.assert_allclose(raw.boxes, [[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 0.5]])


@pytest.mark.parametrize("outs", [
    [spec(0, "logits", (1, 1001))],
    [spec(0, "a", (1, 10, 4)), spec(1, "b", (1, 10)), spec(2, "c", (1, 10))],
    [spec(0, "a", (1, 10, 4), np.uint8), spec(1, "b", (1, 10)), spec(2, "c", (1, 10)),
     spec(3, "d", (1,))],
    [spec(0, "seg", (1, 64, 64, 21))],
])
def test_unknown_layouts_match_nothing(outs):
    assert choose_decoder(outs, LABELS3) is None


def test_yolov8_channels_first():
    decoder = choose_decoder([spec(0, "output0", (1, 7, 50))], LABELS3)
    assert (decoder.layout, decoder.num_classes, decoder.resize) == ("yolov8", 3, "letterbox")


def test_yolov5_and_transposed_v8_told_apart_by_label_count():
    v5 = choose_decoder([spec(0, "output", (1, 50, 8))], LABELS3)
    assert (v5.layout, v5.num_classes) == ("yolov5", 3)
    v8t = choose_decoder([spec(0, "output", (1, 50, 7))], LABELS3)
    assert (v8t.layout, v8t.num_classes) == ("yolov8", 3)


def _v8_predictions(rows, n=16):
    """rows of (cx, cy, w, h, s0, s1, s2), padded with empty anchors -> [1, 7, n]"""
    pred = np.zeros((n, 7), np.float32)
    pred[:len(rows)] = rows
    return pred.T[None]


def test_yolov8_decode_with_nms():
    decoder = choose_decoder([spec(0, "output0", (1, 7, 16))], LABELS3)
    pred = _v8_predictions([
        [0.5, 0.5, 0.2, 0.4, 0.1, 0.8, 0.0],   # banana
        [0.51, 0.5, 0.2, 0.4, 0.0, 0.6, 0.1],  # same banana, weaker: suppressed
        [0.2, 0.2, 0.1, 0.1, 0.0, 0.0, 0.7],   # milk
        [0.8, 0.8, 0.1, 0.1, 0.01, 0.02, 0.0],  # below the floor
    ])
    raw = decoder.decode([pred])
    assert raw.class_ids.tolist() == [1, 2]
    np.testing.assert_allclose(raw.scores, [0.8, 0.7], atol=1e-6)
    np.testing.assert_allclose(raw.boxes, [[0.3, 0.4, 0.7, 0.6], [0.15, 0.15, 0.25, 0.25]],
                               atol=1e-6)


def test_yolov8_pixel_boxes_scaled_by_input_size():
    decoder = choose_decoder([spec(0, "output0", (1, 7, 16))], LABELS3)
    decoder.input_size = (320, 160)
    raw = decoder.decode([_v8_predictions([[160, 80, 64, 32, 0.0, 0.0, 0.9]])])
    np.testing.assert_allclose(raw.boxes, [[0.4, 0.4, 0.6, 0.6]], atol=1e-6)


def test_yolov5_quantized_objectness_times_class():
    # uint8 output, scale 1/255, zero point 0: value = q / 255.
    decoder = choose_decoder([spec(0, "output", (1, 16, 8), np.uint8, 1 / 255, 0)], LABELS3)
    q = np.zeros((1, 16, 8), np.uint8)
    q[0, 0] = [102, 102, 51, 51, 255, 0, 204, 0]  # obj 1.0 * banana 0.8
    q[0, 1] = [51, 51, 25, 25, 128, 255, 0, 0]  # obj 0.5 * apple 1.0
    q[0, 2] = [200, 200, 25, 25, 10, 255, 0, 0]  # obj 0.04: below the floor
    raw = decoder.decode([q])
    assert raw.class_ids.tolist() == [1, 0]
    np.testing.assert_allclose(raw.scores, [0.8, 128 / 255], atol=1e-6)
    np.testing.assert_allclose(raw.boxes[0], [0.3, 0.3, 0.5, 0.5], atol=1e-6)


def test_int8_dequantize():
    s = spec(0, "x", (1, 3), np.int8, 0.5, -10)
    np.testing.assert_allclose(decoders.dequantize(np.array([[-10, 0, 10]], np.int8), s),
                               [[0.0, 5.0, 10.0]])
