"""Every decoder on its fixture model (models/fixtures, hand-set weights, known outputs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.config import ModelConfig
from agent.detect.detector import open_detector
from agent.detect.model_file import EDGETPU_CUSTOM_OP, read_model_file
from agent.errors import EXIT_BAD_INPUT, EXIT_HARDWARE, AcceleratorError, ModelError

FOLDER = Path(__file__).resolve().parent.parent / "models" / "fixtures"


@pytest.fixture(scope="module")
def fixtures():
    folder = FOLDER
    if not (folder / "expected.json").exists():
        pytest.skip("fixture models not built")
    return folder


@pytest.fixture(scope="module")
def expected(fixtures):
    return json.loads((fixtures / "expected.json").read_text())


def model(fixtures, name: str, **kw) -> ModelConfig:
    return ModelConfig(path=str(fixtures / name), labels=str(fixtures / "labels.txt"),
                       edgetpu_path=str(fixtures / "absent.tflite"), **{"device": "cpu", **kw})


def no_tpu(library, options):
    raise ValueError(f"Failed to load delegate from {library}")


DETECTORS = ["ssd_tf1_order.tflite", "ssd_tf2_order.tflite", "ssd_signature.tflite",
             "yolov5_uint8.tflite", "yolov8_int8.tflite"]


@pytest.mark.parametrize("name", DETECTORS)
def test_fixture_detections_match_expected(fixtures, expected, name):
    want = expected["fixtures"][name]
    detector = open_detector(model(fixtures, name))
    assert detector.info.layout == want["layout"]
    assert detector.info.input_size == tuple(expected["input"]["size"])
    image = np.asarray(Image.open(fixtures / expected["input"]["file"]).convert("RGB"))
    found = sorted(detector.detect(image), key=lambda d: d.class_id)
    truth = sorted(expected["detections"], key=lambda d: d["class_id"])
    strong = [d for d in found if d.score >= 0.3]
    assert [(d.class_id, d.label) for d in strong] == [(t["class_id"], t["label"]) for t in truth]
    for got, ref in zip(strong, truth):
        assert got.score == pytest.approx(want["score"], abs=expected["score_tolerance"])
        assert got.box == pytest.approx(tuple(ref["box"]), abs=expected["box_tolerance"])
    black = np.zeros_like(image)
    assert [d for d in detector.detect(black) if d.score >= 0.3] == []
    detector.close()


def test_fixture_on_a_frame_of_another_size(fixtures, expected):
    # A 128x128 frame is stretched to the 64x64 input; boxes stay relative to the frame.
    image = np.asarray(Image.open(fixtures / expected["input"]["file"]).convert("RGB"))
    big = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)
    detector = open_detector(model(fixtures, "ssd_tf1_order.tflite"))
    found = {d.label: d.box for d in detector.detect(big) if d.score >= 0.3}
    for ref in expected["detections"]:
        assert found[ref["label"]] == pytest.approx(tuple(ref["box"]), abs=0.02)


def test_classifier_is_not_a_detector(fixtures):
    with pytest.raises(ModelError, match="not a detector") as caught:
        open_detector(model(fixtures, "classifier.tflite"))
    assert caught.value.exit_code == EXIT_BAD_INPUT


@pytest.mark.parametrize("device", ["auto", "cpu"])
def test_edgetpu_compiled_fixture_without_tpu(fixtures, device):
    info = read_model_file(fixtures / "edgetpu_ssd.tflite")
    assert info.edgetpu_compiled and EDGETPU_CUSTOM_OP in info.custom_ops
    with pytest.raises(AcceleratorError, match="compiled for the Edge TPU") as caught:
        open_detector(model(fixtures, "edgetpu_ssd.tflite", device=device),
                      delegate_loader=no_tpu)
    assert caught.value.exit_code == EXIT_HARDWARE
    assert "use the CPU model: model.path without _edgetpu" in str(caught.value)
    assert str(caught.value).count("(") == (1 if device == "cpu" else 2)  # no nesting


def test_fixture_label_count_mismatch(fixtures, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("red\ngreen\nblue\nwhite\n")
    for name in ("yolov8_int8.tflite", "ssd_tf1_order.tflite"):
        config = ModelConfig(path=str(fixtures / name), labels=str(labels), device="cpu")
        with pytest.raises(ModelError, match="has 4 labels but model .* has 3 classes"):
            open_detector(config)
