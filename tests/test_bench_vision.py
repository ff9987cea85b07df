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


def test_quick_run_gives_positive_rates_against_the_hand_written_loop():
    results = vision.run(quick=True)
    head = results[0]
    assert head.name.startswith("frames/s (cpu, 640x480 frames -> 160x160 model)")
    assert head.value > 0 and head.baseline and head.baseline > 0
    assert head.baseline_label == "hand-written loop" and head.ok is not None
    stages = {r.name.strip(): r for r in results[1:4]}
    assert set(stages) == {"preprocess per frame (cpu)", "invoke per frame (cpu)",
                           "decode per frame (cpu)"}
    assert all(r.unit == "ms" and r.value > 0 for r in stages.values())
    assert results[-1].name == "process RSS" and results[-1].value > 10


def test_stage_times_cover_every_frame_with_an_injected_clock():
    detector = open_detector(ModelConfig(device="cpu"))
    ticks = iter(range(10_000))
    try:
        stages = vision.stage_times(detector, vision.camera_frames(2), clock=lambda: next(ticks))
    finally:
        detector.close()
    # Each stage is one tick per frame on this clock: 1000 "ms" per tick, averaged.
    assert stages == {"preprocess": 1000.0, "invoke": 1000.0, "decode": 1000.0}


def test_replay_source_cycles_the_same_frames_with_indices():
    frames = vision.camera_frames(2, size=(64, 48))
    source = vision.ReplaySource(frames, clock=lambda: 5.0)
    read = [source.read() for _ in range(3)]
    assert [f.index for f in read] == [0, 1, 2]
    assert read[2].image is frames[0] and read[0].t_mono == 5.0


def test_process_memory_reads_proc_status(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n")
    assert vision.process_memory_mb(status) == (100.0, 200.0)
    assert vision.process_memory_mb(tmp_path / "missing") is None


def test_best_rates_counts_every_call():
    calls = [0, 0]

    def step(k):
        return lambda i: calls.__setitem__(k, calls[k] + 1)

    rates = vision.best_rates([step(0), step(1)], iterations=20, rounds=4)
    assert all(r > 0 for r in rates)
    # Each round: up to 5 warm-up calls plus 5 timed calls per step.
    assert calls == [40, 40]


def test_raw_step_runs_the_interpreter_on_a_resized_camera_frame():
    detector = open_detector(ModelConfig(device="cpu"))
    frame = np.zeros((480, 640, 3), np.uint8)
    vision.raw_step(detector, [frame])(0)
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
    assert len(results) == 10 and names[4].startswith("frames/s (edgetpu")
    assert names[8] == "edge tpu vs cpu frames/s"
    assert results[8].baseline == results[0].value and results[8].value == results[4].value
    without = vision.run(quick=True, model=ModelConfig(edgetpu_path=str(tmp_path / "x.tflite")),
                         delegate_loader=loader)
    assert len(without) == 5
