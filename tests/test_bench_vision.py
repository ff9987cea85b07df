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
