"""Vision benchmark: the full Detector.detect against the bare interpreter loop, same run.

The raw baseline is set_tensor / invoke / get_tensor on one prepared tensor;
the full path adds what the agent does per frame: quantize the frame, decode
the outputs and, when the frame is not at the model size, resize it. Their
ratio is the share of the model's speed the agent keeps. Frames at the input
size are the live path (the Pi's ISP scales them); 320x240 frames show the cost
of resizing in software (webcams, files). With a Coral attached, the Edge TPU
model is also measured against the CPU model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from agent.bench.result import BenchResult
from agent.config import ModelConfig
from agent.detect.detector import TfliteDetector, model_paths, open_detector, probe_accelerator
from agent.detect.runtime import DelegateLoader

RESIZED_FROM = (320, 240)  # a webcam-like frame the detector has to resize
RATIO_GOAL = 0.80
ROUNDS = 5


def _frames(count: int, size: tuple[int, int]) -> list[np.ndarray]:
    from agent.camera.synthetic import SyntheticSource

    source = SyntheticSource(seed=11, size=size)
    frames = []
    for _ in range(count):
        frame = source.read()
        assert frame is not None
        frames.append(frame.image)
    source.close()
    return frames


def _rate(step: Callable[[int], object], iterations: int,
          clock: Callable[[], float] = time.monotonic) -> float:
    """Calls per second of step(i), after a short warm-up."""
    for i in range(min(5, iterations)):
        step(i)
    start = clock()
    for i in range(iterations):
        step(i)
    elapsed = clock() - start
    return iterations / elapsed if elapsed > 0 else float("inf")


def raw_step(detector: TfliteDetector, frame: np.ndarray) -> Callable[[int], object]:
    """The bare interpreter loop on one prepared tensor."""
    interpreter = detector.interpreter
    tensor, _ = detector.prepare(frame)
    index = detector.input.index
    outputs = [d["index"] for d in interpreter.get_output_details()]

    def step(_: int) -> None:
        interpreter.set_tensor(index, tensor)
        interpreter.invoke()
        for out in outputs:
            interpreter.get_tensor(out)

    return step


def detect_step(detector: TfliteDetector, frames: list[np.ndarray]) -> Callable[[int], object]:
    return lambda i: detector.detect(frames[i % len(frames)])


def best_rates(steps: list[Callable[[int], object]], iterations: int,
               rounds: int) -> list[float]:
    """Each step's best rate over interleaved rounds, so a busy moment hits all of them alike."""
    best = [0.0] * len(steps)
    per_round = max(1, iterations // rounds)
    for _ in range(rounds):
        for k, step in enumerate(steps):
            best[k] = max(best[k], _rate(step, per_round))
    return best


def _measure(model: ModelConfig, iterations: int, frame_count: int, label: str,
             delegate_loader: DelegateLoader | None = None) -> tuple[list[BenchResult], float]:
    """Raw vs full at the input size (with the ratio goal) and from 320x240 frames (no goal)."""
    detector = open_detector(model, delegate_loader=delegate_loader)
    try:
        info = detector.info
        native = _frames(frame_count, info.input_size)
        resized = _frames(frame_count, RESIZED_FROM)
        raw, full, full_resized = best_rates(
            [raw_step(detector, native[0]), detect_step(detector, native),
             detect_step(detector, resized)], iterations, ROUNDS)
    finally:
        detector.close()
    width, height = info.input_size
    results = [
        BenchResult(name=f"detect fps ({label}, {width}x{height} frames)", value=full,
                    unit="fps", baseline=raw, goal=f">= {RATIO_GOAL:.2f}",
                    ok=full / raw >= RATIO_GOAL if raw else False,
                    note=f"{info.layout}, {iterations} frames"),
        BenchResult(name=f"detect fps ({label}, {RESIZED_FROM[0]}x{RESIZED_FROM[1]} frames "
                         "resized)", value=full_resized, unit="fps", baseline=raw,
                    note="software resize, as for webcams and files; no goal"),
    ]
    return results, full


def run(quick: bool = False, *, model: ModelConfig | None = None,
        delegate_loader: DelegateLoader | None = None) -> list[BenchResult]:
    """The bundled model (or ``model``) on the CPU, and on the Edge TPU when one is usable."""
    iterations = 40 if quick else 400
    frame_count = 4 if quick else 16
    base = model or ModelConfig()
    results, cpu_fps = _measure(replace(base, device="cpu"), iterations, frame_count, "cpu")
    edgetpu = replace(base, device="edgetpu")
    usable, _ = probe_accelerator(edgetpu, delegate_loader)
    if not usable or not model_paths(edgetpu)[1].exists():
        return results
    tpu_results, tpu_fps = _measure(edgetpu, iterations, frame_count, "edgetpu", delegate_loader)
    results.extend(tpu_results)
    results.append(BenchResult(
        name="edge tpu vs cpu detect", value=tpu_fps, unit="fps", baseline=cpu_fps,
        goal=">= 1.00", ok=tpu_fps >= cpu_fps, note="same frames, full detect path"))
    return results
