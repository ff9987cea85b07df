"""The vision benchmark runs on the bundled model and returns sane numbers (never timed asserts)."""

from __future__ import annotations

import numpy as np
import pytest

from agent import paths
from agent.bench import vision
from agent.config import ModelConfig
from agent.detect.detector import open_detector

pytestmark = pytest.mark.skipif(
    not (paths.bundled_models_dir() / paths.DEMO_MODEL).exists(), reason="no bundled model")


def test_quick_run_gives_positive_rates_against_the_raw_loop():
    results = vision.run(quick=True)
    assert len(results) >= 2
    for result in results:
        assert result.unit == "fps" and result.value > 0
        assert result.baseline is not None and result.baseline > 0
        assert result.ratio is not None and result.ratio > 0
    assert results[0].goal and results[0].ok is not None
    assert "resized" in results[1].name


def test_best_rates_counts_every_call():
    calls = [0, 0]

    def step(k):
        return lambda i: calls.__setitem__(k, calls[k] + 1)

    rates = vision.best_rates([step(0), step(1)], iterations=20, rounds=4)
    assert all(r > 0 for r in rates)
    # Each round: up to 5 warm-up calls plus 5 timed calls per step.
    assert calls == [40, 40]


def test_raw_step_runs_the_interpreter_on_a_prepared_tensor():
    detector = open_detector(ModelConfig(device="cpu"))
    frame = np.zeros((*detector.info.input_size[::-1], 3), np.uint8)
    vision.raw_step(detector, frame)(0)
    out = detector.interpreter.get_tensor(detector.interpreter.get_output_details()[0]["index"])
    assert out.size > 0
    detector.close()


def test_edge_tpu_rows_when_a_coral_is_usable(tmp_path):
    from fake_edgetpu import build_fake_edgetpu

    from agent.detect import runtime

    lib = build_fake_edgetpu(tmp_path)
    inner = runtime.default_delegate_loader(runtime.interpreter_module())

    def loader(library, options):
        return inner(str(lib), options)

    bundled = paths.bundled_models_dir()
    # The stand-in delegate runs graphs on the CPU, so the CPU model serves as the Edge TPU one.
    model = ModelConfig(edgetpu_path=str(bundled / paths.DEMO_MODEL))
    results = vision.run(quick=True, model=model, delegate_loader=loader)
    names = [r.name for r in results]
    assert len(results) == 5 and names[2].startswith("detect fps (edgetpu")
    assert names[4] == "edge tpu vs cpu detect"
    assert results[4].baseline == results[0].value and results[4].value == results[2].value
    without = vision.run(quick=True, model=ModelConfig(edgetpu_path=str(tmp_path / "x.tflite")),
                         delegate_loader=loader)
    assert len(without) == 2
