"""The bundled demo model: its file, its held-out accuracy, and the synthetic camera's truth.

Runs the real LiteRT interpreter through agent.detect.detector on the CPU.
"""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as fb
from vision_support import claimed_truth, score_frames

from agent import paths
from agent.basket.catalog import Catalog
from agent.camera.shapes import PRODUCTS
from agent.camera.synthetic import SyntheticSource
from agent.config import DetectionConfig, ModelConfig
from agent.detect.detector import open_detector
from agent.detect.types import Detection

MODELS = Path(__file__).resolve().parent.parent / "models"
# Measured by models/evaluate.py (see models/README.md); the floors sit a little below.
# 150 images: mAP 0.994, lowest class AP 0.983 (cereal), per-label counts right in 96%
# of images at min_score; 1000 images: mAP 0.995, counts right in 94%.
MAP50_FLOOR = 0.97
CLASS_AP50_FLOOR = 0.93
COUNTS_RIGHT_FLOOR = 0.90
HELD_OUT_IMAGES = 150
MIN_SCORE = DetectionConfig().min_score
_BUILTIN_NAMES = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}


def _load(name: str) -> SimpleNamespace:
    """A script from models/ (they are not a package), left out of sys.modules.

    runpy registers the module only while it runs, which its dataclasses need.
    """
    return SimpleNamespace(**runpy.run_path(str(MODELS / f"{name}.py"), run_name=f"models_{name}"))


@pytest.fixture(scope="module")
def evaluate() -> SimpleNamespace:
    return _load("evaluate")


@pytest.fixture(scope="module")
def detector():
    det = open_detector(ModelConfig(device="cpu", threads=1))
    yield det
    det.close()


def test_bundled_model_is_small_int8_ssd_in_tf1_order(detector) -> None:
    model = MODELS / paths.DEMO_MODEL
    assert model.stat().st_size <= 4 * 1024 * 1024
    assert detector.info.layout == "ssd-tf1"
    assert detector.info.input_size == (160, 160)
    assert detector.input.dtype == np.uint8
    # Labels and catalog agree with the renderer the model was trained on.
    assert detector.labels == PRODUCTS
    catalog = Catalog.load(MODELS / paths.DEMO_CATALOG)
    ids = [catalog.lookup(label).product_id for label in PRODUCTS]  # type: ignore[union-attr]
    assert ids == [f"P{i:03d}" for i in range(1, len(PRODUCTS) + 1)]
    raw = json.loads((MODELS / paths.DEMO_CATALOG).read_text())
    assert [p["label"] for p in raw["products"]] == list(PRODUCTS)


def test_graph_is_integer_up_to_the_postprocessing_op() -> None:
    """What edgetpu_compiler needs: int8 ops in one block, then only the CPU tail."""
    model = fb.ModelT.InitFromObj(
        fb.Model.GetRootAsModel((MODELS / paths.DEMO_MODEL).read_bytes(), 0)
    )
    graph = model.subgraphs[0]
    names = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        names.append(code.customCode.decode() if code.customCode else _BUILTIN_NAMES[builtin])
    assert names[-3:] == ["DEQUANTIZE", "DEQUANTIZE", "TFLite_Detection_PostProcess"]
    assert "DEQUANTIZE" not in names[:-3]
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "LOGISTIC"} <= set(names)
    integer = (fb.TensorType.INT8, fb.TensorType.UINT8, fb.TensorType.INT32)
    tail_tensors = {t for op in graph.operators[-3:] for t in (*op.inputs, *op.outputs)}
    for op in graph.operators[:-3]:
        for t in op.outputs:
            if t not in tail_tensors:
                assert graph.tensors[t].type in integer, graph.tensors[t].name
    assert graph.tensors[graph.inputs[0]].type == fb.TensorType.UINT8
    outputs = [graph.tensors[t].name.decode() for t in graph.outputs]
    assert outputs == ["TFLite_Detection_PostProcess"] + [
        f"TFLite_Detection_PostProcess:{i}" for i in (1, 2, 3)
    ]


def test_held_out_map_stays_above_floor(evaluate: SimpleNamespace, detector) -> None:
    result = evaluate.evaluate(detector, evaluate.held_out(HELD_OUT_IMAGES))
    assert result.images == HELD_OUT_IMAGES and result.objects > HELD_OUT_IMAGES
    assert result.map50 >= MAP50_FLOOR, result
    for label, ap in result.ap50.items():
        assert ap >= CLASS_AP50_FLOOR, (label, result)
    assert result.counts_right >= COUNTS_RIGHT_FLOOR, result


@pytest.mark.parametrize("size", [(160, 160), (320, 240)])
def test_detections_match_synthetic_source_truth(detector, size: tuple[int, int]) -> None:
    """Seeds past any the model saw; 320x240 frames go through the detector's resize."""
    objects, matched, found = score_frames(detector, SyntheticSource(9001, size), 400, 4,
                                           MIN_SCORE)
    assert objects > 100
    # Measured 1.00 / 1.00 at both sizes.
    assert matched / objects >= 0.95  # recall at the tracker's min_score
    assert matched / found >= 0.95  # precision


def _det(label: str, score: float, box: tuple[float, float, float, float]) -> Detection:
    return Detection(PRODUCTS.index(label), label, score, box)


def test_match_claims_each_truth_once_and_needs_label_and_overlap(
    evaluate: SimpleNamespace,
) -> None:
    truth = [("apple", (0.1, 0.1, 0.4, 0.4)), ("milk", (0.5, 0.5, 0.9, 0.9))]
    hits = evaluate.match(
        [
            _det("apple", 0.9, (0.1, 0.1, 0.4, 0.4)),
            _det("apple", 0.8, (0.12, 0.1, 0.4, 0.4)),  # duplicate: truth already claimed
            _det("soda", 0.7, (0.5, 0.5, 0.9, 0.9)),  # right place, wrong label
            _det("milk", 0.6, (0.5, 0.5, 0.6, 0.6)),  # right label, IoU too small
        ],
        truth,
    )
    assert [hit for _, hit in hits] == [True, False, False, False]


def test_truth_matching_claims_each_truth_once(
        evaluate: SimpleNamespace) -> None:
    truth = [("apple", (0.1, 0.1, 0.4, 0.4)), ("milk", (0.5, 0.5, 0.9, 0.9))]
    found = [_det("apple", 0.8, (0.12, 0.1, 0.4, 0.4)), _det("apple", 0.9, (0.1, 0.1, 0.4, 0.4)),
             _det("soda", 0.7, (0.5, 0.5, 0.9, 0.9)), _det("milk", 0.6, (0.5, 0.5, 0.6, 0.6))]
    assert claimed_truth(found, truth) == 1
    assert claimed_truth(found + [_det("milk", 0.5, (0.52, 0.5, 0.9, 0.9))], truth) == 2
    assert claimed_truth(found, truth) == sum(hit for _, hit in evaluate.match(found, truth))


def test_average_precision(evaluate: SimpleNamespace) -> None:
    ap = evaluate.average_precision
    assert ap([(0.9, True), (0.8, True)], 2) == pytest.approx(1.0)
    assert ap([(0.9, True)], 2) == pytest.approx(0.5)  # half the objects never found
    assert ap([(0.9, False), (0.8, True)], 1) == pytest.approx(0.5)  # found after a miss
    assert ap([], 3) == 0.0
    assert math.isnan(ap([(0.5, False)], 0))


def test_evaluation_of_a_perfect_detector_is_one(evaluate: SimpleNamespace) -> None:
    """The metric itself, fed the samples' own truth as detections."""
    samples = list(evaluate.held_out(20))

    class Oracle:
        def __init__(self) -> None:
            self.queue = list(samples)

        def detect(self, image: np.ndarray) -> list[Detection]:
            s = self.queue.pop(0)
            assert image is s.image
            return [
                _det(PRODUCTS[c], 0.9, tuple(map(float, b)))  # type: ignore[arg-type]
                for b, c in zip(s.boxes, s.class_ids, strict=True)
            ]

    result = evaluate.evaluate(Oracle(), samples)
    assert result.map50 == pytest.approx(1.0)
    assert result.objects == result.detections == sum(len(s.boxes) for s in samples)
    assert (result.counts_right, result.extra, result.missed) == (1.0, 0, 0)


def test_evaluation_counts_extra_and_missed_detections(evaluate: SimpleNamespace) -> None:
    """Each product reported twice, the second time weakly; then every first one dropped."""
    samples = [s for s in evaluate.held_out(20) if len(s.boxes)]
    objects = sum(len(s.boxes) for s in samples)

    def truth_of(image: np.ndarray) -> list[Detection]:
        s = next(s for s in samples if s.image is image)
        return [
            _det(PRODUCTS[c], 0.9, tuple(map(float, b)))  # type: ignore[arg-type]
            for b, c in zip(s.boxes, s.class_ids, strict=True)
        ]

    class Doubler:
        def detect(self, image: np.ndarray) -> list[Detection]:
            found = truth_of(image)
            return found + [Detection(d.class_id, d.label, 0.5, d.box) for d in found]

    class Blind:
        def detect(self, image: np.ndarray) -> list[Detection]:
            return [Detection(d.class_id, d.label, 0.1, d.box) for d in truth_of(image)]

    doubled = evaluate.evaluate(Doubler(), samples, min_score=0.4)
    assert (doubled.counts_right, doubled.extra, doubled.missed) == (0.0, objects, 0)
    assert doubled.map50 == pytest.approx(1.0)  # duplicates rank below every true hit
    # Above the duplicates' score they no longer count.
    assert evaluate.evaluate(Doubler(), samples, min_score=0.6).counts_right == 1.0
    blind = evaluate.evaluate(Blind(), samples, min_score=0.4)
    assert (blind.counts_right, blind.extra, blind.missed) == (0.0, 0, objects)
