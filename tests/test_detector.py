"""open_detector on real TFLite models: layouts, devices, and every bad-model case."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import numpy as np
import pytest
from fake_edgetpu import build_fake_edgetpu
from structlog.testing import capture_logs
from tflite_builder import ModelSpec, Out, build, ssd_outputs

from agent.config import ModelConfig
from agent.detect import runtime
from agent.detect.detector import open_detector, probe_accelerator
from agent.detect.model_file import EDGETPU_CUSTOM_OP
from agent.errors import EXIT_BAD_INPUT, EXIT_HARDWARE, AcceleratorError, ModelError

LABELS = "apple\nbanana\nmilk\n"
BOXES = [[0.1, 0.2, 0.5, 0.6], [0.3, 0.3, 0.9, 0.8], [0.0, 0.0, 1.0, 1.0]]


@pytest.fixture(scope="module")
def fake_lib(tmp_path_factory):
    return build_fake_edgetpu(tmp_path_factory.mktemp("edgetpu"))


def fake_tpu(fake_lib):
    inner = runtime.default_delegate_loader(runtime.interpreter_module())
    return lambda library, options: inner(str(fake_lib), options)


def no_tpu(library, options):
    raise ValueError(f"Failed to load delegate from {library}")


@pytest.fixture
def files(tmp_path):
    def write(spec: ModelSpec | bytes, name="m.tflite", labels=LABELS):
        path = tmp_path / name
        path.write_bytes(spec if isinstance(spec, bytes) else build(spec))
        (tmp_path / "labels.txt").write_text(labels, encoding="utf-8")
        return path

    return write


def config(path, tmp_path=None, **kw):
    labels = str(path.parent / "labels.txt")
    return ModelConfig(path=str(path), labels=labels, edgetpu_path=str(path.parent / "none.tflite"),
                       **{"device": "cpu", **kw})


def ssd(order="tf1", signature=False, names=None):
    outs = ssd_outputs(BOXES, [1, 2, 0], [0.9, 0.6, 0.02], 2, order="tf1", names=names)
    if order == "tf2":
        outs = [outs[2], outs[0], outs[3], outs[1]]
    elif order == "swapped":
        # Boxes first like TF1 but scores before classes: only the names tell them apart.
        outs = [outs[0], outs[2], outs[1], outs[3]]
    return ModelSpec(outputs=outs, signature=signature)


FRAME = np.zeros((240, 320, 3), np.uint8)


@pytest.mark.parametrize("spec,layout", [
    (ssd("tf1"), "ssd-tf1"),
    (ssd("tf2", names=("Identity", "Identity_1", "Identity_2", "Identity_3")), "ssd-tf2"),
    (ssd("tf2", signature=True, names=("detection_boxes", "detection_classes", "detection_scores",
                                       "num_detections")), "ssd-signature"),
    (ssd("swapped", signature=True, names=("detection_boxes", "detection_classes",
                                           "detection_scores", "num_detections")),
     "ssd-signature"),
])
def test_ssd_layouts_on_the_real_interpreter(files, spec, layout):
    detector = open_detector(config(files(spec)))
    assert detector.info.layout == layout
    assert detector.info.input_size == (32, 32) and detector.info.device == "cpu"
    found = detector.detect(FRAME)
    assert [(d.class_id, d.label) for d in found] == [(1, "banana"), (2, "milk")]
    assert found[0].score == pytest.approx(0.9)
    assert found[0].box == pytest.approx((0.1, 0.2, 0.5, 0.6))
    assert found[1].box == pytest.approx((0.3, 0.3, 0.9, 0.8))
    detector.close()


def test_yolov8_letterbox_boxes_mapped_to_the_frame(files):
    pred = np.zeros((1, 7, 16), np.float32)
    # In the 32x32 input a 320x240 frame occupies rows 4..28; this box spans all of it.
    pred[0, :, 0] = [0.5, 0.5, 1.0, 24 / 32, 0.0, 0.0, 0.95]
    spec = ModelSpec(input_dtype=np.float32, outputs=[Out("output0", pred)])
    detector = open_detector(config(files(spec)))
    assert detector.info.layout == "yolov8"
    (found,) = detector.detect(FRAME)
    assert (found.label, found.score) == ("milk", pytest.approx(0.95))
    assert found.box == pytest.approx((0.0, 0.0, 1.0, 1.0), abs=1e-6)


def test_yolov5_int8_input_and_uint8_output(files):
    q = np.zeros((1, 16, 8), np.uint8)
    q[0, 0] = [128, 128, 64, 64, 255, 0, 230, 0]
    spec = ModelSpec(input_dtype=np.int8, input_scale=1 / 255, input_zero_point=-128,
                     outputs=[Out("output", q, scale=1 / 255, zero_point=0)])
    detector = open_detector(config(files(spec)))
    assert detector.info.layout == "yolov5"
    (found,) = detector.detect(np.zeros((32, 32, 3), np.uint8))
    assert (found.label, found.score) == ("banana", pytest.approx(230 / 255))
    c, h = 128 / 255, 32 / 255
    assert found.box == pytest.approx((c - h, c - h, c + h, c + h), abs=1e-6)


def test_interpreter_built_once_with_threads_from_cpu_count(files):
    built = []
    real = importlib.import_module("ai_edge_litert.interpreter")

    def importer(name: str) -> ModuleType:
        module = ModuleType(name)
        module.load_delegate = real.load_delegate

        def interpreter(**kw):
            built.append(kw["num_threads"])
            return real.Interpreter(**kw)

        module.Interpreter = interpreter
        return module

    detector = open_detector(config(files(ssd()), threads=0), importer=importer)
    interpreter = detector.interpreter
    for _ in range(3):
        detector.detect(FRAME)
    assert detector.interpreter is interpreter
    assert built == [os.cpu_count()]
    open_detector(config(files(ssd()), threads=3), importer=importer)
    assert built[-1] == 3


def test_auto_uses_edgetpu_model_when_the_delegate_loads(files, fake_lib):
    cpu = files(ssd(), "m.tflite")
    tpu = files(ssd("tf2", names=("Identity", "Identity_1", "Identity_2", "Identity_3")),
                "m_edgetpu.tflite")
    model = ModelConfig(device="auto", path=str(cpu), edgetpu_path=str(tpu),
                        labels=str(cpu.parent / "labels.txt"), edgetpu_device="usb:0")
    detector = open_detector(model, delegate_loader=fake_tpu(fake_lib))
    assert (detector.info.device, detector.info.model_path) == ("edgetpu", str(tpu))
    assert detector.info.layout == "ssd-tf2" and detector.info.fallback_reason == ""
    assert [d.label for d in detector.detect(FRAME)] == ["banana", "milk"]


def test_auto_falls_back_to_cpu_with_a_warning(files):
    cpu = files(ssd())
    with capture_logs() as logs:
        detector = open_detector(config(cpu, device="auto"), delegate_loader=no_tpu)
    assert detector.info.device == "cpu" and detector.info.model_path == str(cpu)
    assert detector.info.fallback_reason.startswith("no Edge TPU found")
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert warnings and warnings[0]["reason"] == detector.info.fallback_reason


def test_auto_with_tpu_but_no_edgetpu_model(files, fake_lib):
    cpu = files(ssd())
    detector = open_detector(config(cpu, device="auto"), delegate_loader=fake_tpu(fake_lib))
    assert detector.info.device == "cpu"
    assert "no Edge TPU model at" in detector.info.fallback_reason


def test_device_edgetpu_without_tpu_is_hardware_error(files, fake_lib):
    tpu = files(ssd(), "m_tpu.tflite")
    model = config(files(ssd()), device="edgetpu", edgetpu_device="pci:1")
    model = ModelConfig(**{**model.__dict__, "edgetpu_path": str(tpu)})
    with pytest.raises(AcceleratorError, match="no Edge TPU found matching 'pci:1'") as caught:
        open_detector(model, delegate_loader=fake_tpu(fake_lib))
    assert caught.value.exit_code == EXIT_HARDWARE


def no_library():
    def cdll(name):
        raise OSError("cannot open shared object file")

    return runtime.default_delegate_loader(runtime.interpreter_module(), cdll=cdll)


def test_device_edgetpu_without_library(files):
    compiled = ssd()
    compiled.custom_op = EDGETPU_CUSTOM_OP
    path = files(compiled, "m_edgetpu.tflite")
    with pytest.raises(AcceleratorError, match="libedgetpu not installed") as caught:
        open_detector(one_model(path, "edgetpu"), delegate_loader=no_library())
    assert caught.value.exit_code == EXIT_HARDWARE


def test_device_edgetpu_with_tpu_but_missing_model(files, fake_lib):
    with pytest.raises(ModelError, match="Edge TPU model .* does not exist") as caught:
        open_detector(config(files(ssd()), device="edgetpu"), delegate_loader=fake_tpu(fake_lib))
    assert "\n" not in str(caught.value) and str(caught.value).count("(") == 1


# `--model PATH` sets model.path and model.edgetpu_path to the same file: the one model to run.

def one_model(path, device):
    return ModelConfig(device=device, path=str(path), edgetpu_path=str(path),
                       labels=str(path.parent / "labels.txt"))


def compiled_model(files, name="m_edgetpu.tflite"):
    spec = ssd()
    spec.custom_op = EDGETPU_CUSTOM_OP
    return files(spec, name)


class Recorder:
    """Counts delegate loads; any that happen go to the given loader."""

    def __init__(self, loader):
        self.loader = loader
        self.calls = 0

    def __call__(self, library, options):
        self.calls += 1
        return self.loader(library, options)


def _importer_running_compiled_on(twin):
    """The stand-in delegate claims no nodes, so the compiled op would stay unresolved: the
    interpreter is built from the same graph without it, and what it was asked for is recorded."""
    real = importlib.import_module("ai_edge_litert.interpreter")
    asked: list[dict] = []
    module = ModuleType("recording")
    module.load_delegate = real.load_delegate

    def interpreter(**kw):
        asked.append(kw)
        if kw["experimental_delegates"]:
            kw = {**kw, "model_path": str(twin)}
        return real.Interpreter(**kw)

    module.Interpreter = interpreter
    return (lambda name: module), asked


@pytest.mark.parametrize("device", ["auto", "edgetpu"])
def test_compiled_model_runs_on_the_edge_tpu(files, fake_lib, device):
    path = compiled_model(files)
    twin = files(ssd(), "twin.tflite")
    importer, asked = _importer_running_compiled_on(twin)
    with capture_logs() as logs:
        detector = open_detector(one_model(path, device), delegate_loader=fake_tpu(fake_lib),
                                 importer=importer)
    assert (detector.info.device, detector.info.model_path) == ("edgetpu", str(path))
    assert detector.info.fallback_reason == ""
    (kw,) = asked
    assert kw["model_path"] == str(path) and len(kw["experimental_delegates"]) == 1
    assert not [e for e in logs if e["log_level"] == "warning"]
    assert [d.label for d in detector.detect(FRAME)] == ["banana", "milk"]


def test_compiled_model_without_library_on_auto_is_one_cause_one_fix(files):
    path = compiled_model(files)
    with pytest.raises(AcceleratorError) as caught:
        open_detector(one_model(path, "auto"), delegate_loader=no_library())
    assert caught.value.exit_code == EXIT_HARDWARE
    assert str(caught.value) == (
        f"model {path} is compiled for the Edge TPU and no Edge TPU is available "
        "(libedgetpu not installed) (plug in a Coral, install libedgetpu1-std, "
        "or use the CPU model: model.path without _edgetpu)")


def test_compiled_model_without_coral_on_auto(files, fake_lib):
    path = compiled_model(files)
    model = ModelConfig(**{**one_model(path, "auto").__dict__, "edgetpu_device": "pci:1"})
    with pytest.raises(AcceleratorError) as caught:
        open_detector(model, delegate_loader=fake_tpu(fake_lib))
    assert caught.value.exit_code == EXIT_HARDWARE
    assert str(caught.value).startswith(
        f"model {path} is compiled for the Edge TPU and no Edge TPU is available "
        "(no Coral matching 'pci:1' found) (plug in a Coral")


@pytest.mark.parametrize("loader", ["tpu", "none"])
def test_compiled_model_on_cpu_device_is_refused(files, fake_lib, loader):
    path = compiled_model(files)
    recorder = Recorder(fake_tpu(fake_lib) if loader == "tpu" else no_tpu)
    with pytest.raises(AcceleratorError, match="compiled for the Edge TPU and model.device is cpu"
                       ) as caught:
        open_detector(one_model(path, "cpu"), delegate_loader=recorder)
    assert caught.value.exit_code == EXIT_HARDWARE and recorder.calls == 0


@pytest.mark.parametrize("device", ["auto", "cpu"])
def test_cpu_model_runs_on_the_cpu_even_with_a_coral(files, fake_lib, device):
    path = files(ssd(), "mine.tflite")
    # A compiled model beside it (as the bundled one would be) is not used instead.
    compiled_model(files, "mine_edgetpu.tflite")
    recorder = Recorder(fake_tpu(fake_lib))
    with capture_logs() as logs:
        detector = open_detector(one_model(path, device), delegate_loader=recorder)
    assert (detector.info.device, detector.info.model_path) == ("cpu", str(path))
    assert detector.info.fallback_reason == "" and recorder.calls == 0
    assert not [e for e in logs if e["log_level"] == "warning"]


def test_cpu_model_on_edgetpu_device_is_bad_input(files, fake_lib):
    path = files(ssd(), "mine.tflite")
    recorder = Recorder(fake_tpu(fake_lib))
    with pytest.raises(ModelError) as caught:
        open_detector(one_model(path, "edgetpu"), delegate_loader=recorder)
    assert caught.value.exit_code == EXIT_BAD_INPUT and recorder.calls == 0
    assert str(caught.value) == (
        f"model {path} is not compiled for the Edge TPU (compile it with edgetpu_compiler and pass "
        "the _edgetpu.tflite it writes, or use --device auto or cpu to run it on the CPU)")


@pytest.mark.parametrize("content,message", [
    (None, "does not exist"),
    (b"junk junk junk junk", "not a TFLite model"),
    ("truncated", "truncated or damaged"),
])
def test_bad_model_on_edgetpu_device_is_reported_before_the_delegate(files, tmp_path, content,
                                                                    message):
    if content is None:
        path = tmp_path / "gone_edgetpu.tflite"
        (tmp_path / "labels.txt").write_text(LABELS)
    else:
        data = build(ssd()) if content == "truncated" else content
        path = files(data[: len(data) // 3] if content == "truncated" else data,
                     "m_edgetpu.tflite")
    recorder = Recorder(no_library())
    with pytest.raises(ModelError, match=message) as caught:
        open_detector(one_model(path, "edgetpu"), delegate_loader=recorder)
    assert caught.value.exit_code == EXIT_BAD_INPUT and recorder.calls == 0


def test_probe_accelerator_says_a_cpu_model_runs_on_the_cpu(files, fake_lib):
    path = files(ssd(), "mine.tflite")
    ok, detail = probe_accelerator(one_model(path, "auto"), fake_tpu(fake_lib))
    assert ok and detail.endswith(f"but model {path} is not compiled for it; it runs on the CPU")
    ok, detail = probe_accelerator(one_model(compiled_model(files), "auto"), fake_tpu(fake_lib))
    assert ok and detail.startswith("Edge TPU delegate loaded") and "but" not in detail


def _bad(files, content, labels=LABELS):
    path = files(content, labels=labels)
    with pytest.raises(ModelError) as caught:
        open_detector(config(path))
    assert caught.value.exit_code == EXIT_BAD_INPUT
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_missing_model_file(tmp_path):
    (tmp_path / "labels.txt").write_text(LABELS)
    with pytest.raises(ModelError, match="does not exist"):
        open_detector(config(tmp_path / "gone.tflite"))


def test_truncated_model(files):
    data = build(ssd())
    assert "truncated or damaged" in _bad(files, data[: len(data) // 3])


def test_not_a_tflite_model(files):
    assert "not a TFLite model" in _bad(files, b"PK\x03\x04 a zip file, not a model" * 4)


def test_classifier_is_not_a_detector(files):
    spec = ModelSpec(outputs=[Out("logits", np.zeros((1, 1001), np.float32))])
    message = _bad(files, spec)
    assert "not a detector" in message and "logits [1, 1001] float32" in message


def test_non_image_input_is_not_a_detector(files):
    spec = ModelSpec(input_shape=(1, 100), input_dtype=np.float32, outputs=ssd().outputs)
    assert "not an image detector" in _bad(files, spec)


def test_label_count_mismatch(files):
    pred = np.zeros((1, 9, 16), np.float32)  # YOLOv8 with 5 classes
    spec = ModelSpec(input_dtype=np.float32, outputs=[Out("output0", pred)])
    message = _bad(files, spec)
    assert "has 3 labels but model" in message and "has 5 classes" in message


def test_missing_labels(files):
    path = files(ssd())
    (path.parent / "labels.txt").unlink()
    with pytest.raises(ModelError, match="label file .* does not exist"):
        open_detector(config(path))


def test_probe_accelerator(fake_lib, tmp_path):
    ok, detail = probe_accelerator(ModelConfig(edgetpu_device="usb"), fake_tpu(fake_lib))
    assert ok and "Edge TPU delegate loaded" in detail and "(usb)" in detail
    ok, detail = probe_accelerator(ModelConfig(edgetpu_device="pci:1"), fake_tpu(fake_lib))
    assert not ok and detail.startswith("no Edge TPU found matching 'pci:1'")
    ok, detail = probe_accelerator(ModelConfig(edgetpu_device="bogus"), fake_tpu(fake_lib))
    assert not ok and "not a device selector" in detail


def test_ssd_label_count_checked_against_the_postprocess_op(tmp_path):
    from agent import paths

    bundled = paths.bundled_models_dir() / paths.DEMO_MODEL
    if not bundled.exists():
        pytest.skip("no bundled model")
    labels = tmp_path / "labels.txt"
    labels.write_text("apple\nbanana\n", encoding="utf-8")
    classes = len((paths.bundled_models_dir() / paths.DEMO_LABELS).read_text().split())
    with pytest.raises(ModelError, match=f"has 2 labels but model .* has {classes} classes") as caught:
        open_detector(ModelConfig(device="cpu", labels=str(labels)))
    assert caught.value.exit_code == EXIT_BAD_INPUT


def test_int16_input_is_refused(files):
    spec = ssd()
    spec.input_dtype = np.int16
    assert "takes int16 images" in _bad(files, spec)


class _FailingInvoke:
    """Wraps a real interpreter; invoke fails as a runtime does when its device goes away."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def invoke(self):
        raise RuntimeError("Failed to invoke the delegate: USB transfer error")


def _importer_with_failing_invoke():
    real = importlib.import_module("ai_edge_litert.interpreter")
    module = ModuleType("failing")
    module.load_delegate = real.load_delegate
    module.Interpreter = lambda **kw: _FailingInvoke(real.Interpreter(**kw))
    return lambda name: module


def test_edgetpu_invoke_failure_is_hardware_error(files, fake_lib):
    cpu = files(ssd(), "m.tflite")
    # model.edgetpu_path set to a CPU model: it runs through the delegate, with a warning.
    tpu = files(ssd(), "m_tpu.tflite")
    model = ModelConfig(device="edgetpu", path=str(cpu), edgetpu_path=str(tpu),
                        labels=str(cpu.parent / "labels.txt"))
    detector = open_detector(model, delegate_loader=fake_tpu(fake_lib),
                             importer=_importer_with_failing_invoke())
    with pytest.raises(AcceleratorError, match="Edge TPU stopped answering") as caught:
        detector.detect(FRAME)
    assert caught.value.exit_code == EXIT_HARDWARE


def test_cpu_invoke_failure_is_operational_error(files):
    from agent.errors import OperationalError

    detector = open_detector(config(files(ssd())), importer=_importer_with_failing_invoke())
    with pytest.raises(OperationalError, match="inference failed: Failed to invoke"):
        detector.detect(FRAME)


def test_detect_accepts_gray_and_rgba_rejects_float(files):
    detector = open_detector(config(files(ssd())))
    gray = detector.detect(np.zeros((48, 64), np.uint8))
    rgba = detector.detect(np.zeros((48, 64, 4), np.uint8))
    assert [d.label for d in gray] == [d.label for d in rgba] == ["banana", "milk"]
    with pytest.raises(ValueError, match="must be uint8"):
        detector.detect(np.zeros((48, 64, 3), np.float32))


@pytest.mark.parametrize("compiled,device,outcome", [
    (True, "auto", "edgetpu"), (True, "edgetpu", "edgetpu"), (True, "cpu", EXIT_HARDWARE),
    (False, "auto", "cpu"), (False, "cpu", "cpu"), (False, "edgetpu", EXIT_BAD_INPUT),
])
def test_model_flag_with_a_coral(files, fake_lib, compiled, device, outcome):
    import argparse

    from agent.commands.common import flag_layer
    from agent.config import load_config

    path = compiled_model(files) if compiled else files(ssd(), "mine.tflite")
    args = argparse.Namespace(model=str(path), device=device)
    model = load_config(None, flag_layer(args), env={}).model
    model = ModelConfig(**{**model.__dict__, "labels": str(path.parent / "labels.txt")})
    importer, _ = _importer_running_compiled_on(files(ssd(), "twin.tflite"))
    if isinstance(outcome, int):
        with pytest.raises((AcceleratorError, ModelError)) as caught:
            open_detector(model, delegate_loader=fake_tpu(fake_lib), importer=importer)
        assert caught.value.exit_code == outcome
        return
    detector = open_detector(model, delegate_loader=fake_tpu(fake_lib), importer=importer)
    assert (detector.info.device, detector.info.model_path) == (outcome, str(path))


def test_a_custom_cpu_model_alone_is_not_replaced_by_the_bundled_edge_tpu_model(tmp_path):
    from agent.detect.detector import model_paths

    custom = tmp_path / "shelf.tflite"
    cpu, edgetpu, _ = model_paths(ModelConfig(path=str(custom)))
    assert cpu == edgetpu == custom
    _, bundled_tpu, _ = model_paths(ModelConfig())
    assert bundled_tpu.name == "demo_ssd_int8_edgetpu.tflite"
    _, chosen_tpu, _ = model_paths(ModelConfig(path=str(custom), edgetpu_path=str(tmp_path / "t")))
    assert chosen_tpu == tmp_path / "t"
