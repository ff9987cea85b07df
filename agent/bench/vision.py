"""Vision benchmark: the agent's detection path against a minimal hand-written loop, same run.

Both loops take the same 640x480 camera-sized frames. The raw loop is what
anyone would write by hand: resize the frame to the model input (the same PIL
bilinear resize), set the input tensor, invoke, read every output. The full
path is the agent's: frame source -> ``Detector.detect`` (prepare: fit and
quantize; invoke; decode into detections). Their ratio is the share of the
model's speed the agent keeps (goal >= 0.9). Rounds are interleaved so a busy
moment on the machine hits both alike. Also printed: where the time of the
full path goes (preprocess, invoke, decode) and the process's memory. With a
Coral attached, the Edge TPU model is measured the same way and against the CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from agent.bench.procfs import memory_kb
from agent.bench.result import BenchResult
from agent.camera.frame import Frame
from agent.config import ModelConfig
from agent.detect.detector import TfliteDetector, model_paths, open_detector, probe_accelerator
from agent.detect.runtime import DelegateLoader
from agent.errors import OperationalError

CAMERA_SIZE = (640, 480)
RATIO_GOAL = 0.90
ROUNDS = 5


def camera_frames(count: int, size: tuple[int, int] = CAMERA_SIZE) -> list[np.ndarray]:
    """Rendered basket scenes at camera size, made once before timing."""
    from agent.camera.synthetic import SyntheticSource

    source = SyntheticSource(seed=11, size=size)
    try:
        return [_read(source).image for _ in range(count)]
    finally:
        source.close()


def _read(source: object) -> Frame:
    frame = source.read()  # type: ignore[attr-defined]
    if frame is None:  # the synthetic source is endless
        raise OperationalError("the synthetic source ended; it should be endless")
    return frame


class ReplaySource:
    """A frame source over frames already in memory (the camera, minus the sensor)."""

    name = "replay"
    live = False

    def __init__(self, images: list[np.ndarray], clock: Callable[[], float] = time.monotonic):
        self._images = images
        self._clock = clock
        self._index = 0

    def read(self) -> Frame:
        image = self._images[self._index % len(self._images)]
        frame = Frame(image=image, t_mono=self._clock(), index=self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        self._images = []


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


def best_rates(steps: list[Callable[[int], object]], iterations: int,
               rounds: int) -> list[float]:
    """Each step's best rate over interleaved rounds, so a busy moment hits all of them alike."""
    best = [0.0] * len(steps)
    per_round = max(1, iterations // rounds)
    for _ in range(rounds):
        for k, step in enumerate(steps):
            best[k] = max(best[k], _rate(step, per_round))
    return best


def raw_step(detector: TfliteDetector, frames: list[np.ndarray]) -> Callable[[int], object]:
    """The minimal loop: same frames, same resize, same invoke, every output read."""
    interpreter = detector.interpreter
    width, height = detector.info.input_size
    index = detector.input.index
    outputs = [d["index"] for d in interpreter.get_output_details()]

    def step(i: int) -> None:
        resized = Image.fromarray(frames[i % len(frames)]).resize(
            (width, height), Image.Resampling.BILINEAR)
        interpreter.set_tensor(index, np.asarray(resized)[None])
        interpreter.invoke()
        for out in outputs:
            interpreter.get_tensor(out)

    return step


def full_step(detector: TfliteDetector, source: ReplaySource) -> Callable[[int], object]:
    """The agent's path: a frame from the source, then the whole detect."""
    return lambda _i: detector.detect(source.read().image)


def stage_times(detector: TfliteDetector, frames: list[np.ndarray],
                clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Mean milliseconds per frame of preprocess, invoke and decode on the full path."""
    totals = {"preprocess": 0.0, "invoke": 0.0, "decode": 0.0}
    for image in frames:
        t0 = clock()
        tensor, placement = detector.prepare(image)
        t1 = clock()
        outputs = detector.invoke(tensor)
        t2 = clock()
        raw = detector.decoder.decode(outputs)
        placement.to_frame(raw.boxes)
        t3 = clock()
        totals["preprocess"] += t1 - t0
        totals["invoke"] += t2 - t1
        totals["decode"] += t3 - t2
    return {name: 1000.0 * total / len(frames) for name, total in totals.items()}


def process_memory_mb(status: Path = Path("/proc/self/status")) -> tuple[float, float] | None:
    """(current, peak) resident memory of this process in MB, where /proc tells it."""
    reading = memory_kb(status)
    return None if reading is None else (reading[0] / 1024, reading[1] / 1024)


def _measure(model: ModelConfig, iterations: int, frames: list[np.ndarray], label: str,
             delegate_loader: DelegateLoader | None = None) -> tuple[list[BenchResult], float]:
    detector = open_detector(model, delegate_loader=delegate_loader)
    try:
        info = detector.info
        raw, full = best_rates([raw_step(detector, frames),
                                full_step(detector, ReplaySource(frames))], iterations, ROUNDS)
        stages = stage_times(detector, frames * max(1, 40 // len(frames)))
    finally:
        detector.close()
    width, height = info.input_size
    camera = f"{frames[0].shape[1]}x{frames[0].shape[0]}"
    results = [
        BenchResult(f"frames/s ({label}, {camera} frames -> {width}x{height} model)", full, "fps",
                    baseline=raw, baseline_label="hand-written loop", goal=f">= {RATIO_GOAL:.2f}",
                    ok=full / raw >= RATIO_GOAL if raw else False,
                    note=f"{info.layout}, {iterations} frames"),
    ]
    results += [BenchResult(f"  {stage} per frame ({label})", ms, "ms")
                for stage, ms in stages.items()]
    return results, full


def run(quick: bool = False, *, model: ModelConfig | None = None,
        delegate_loader: DelegateLoader | None = None) -> list[BenchResult]:
    """The bundled model (or ``model``) on the CPU, and on the Edge TPU when one is usable."""
    iterations = 40 if quick else 400
    frames = camera_frames(4 if quick else 16)
    base = model or ModelConfig()
    results, cpu_fps = _measure(replace(base, device="cpu"), iterations, frames, "cpu")
    edgetpu = replace(base, device="edgetpu")
    usable, _ = probe_accelerator(edgetpu, delegate_loader)
    if usable and model_paths(edgetpu)[1].exists():
        tpu_results, tpu_fps = _measure(edgetpu, iterations, frames, "edgetpu", delegate_loader)
        results += tpu_results
        results.append(BenchResult(
            "edge tpu vs cpu frames/s", tpu_fps, "fps", baseline=cpu_fps, baseline_label="cpu",
            goal=">= 1.00", ok=tpu_fps >= cpu_fps, note="same frames, full detect path"))
    memory = process_memory_mb()
    if memory is not None:
        results.append(BenchResult("process RSS", memory[0], "MB", note=f"peak {memory[1]:.1f} MB"))
    return results

