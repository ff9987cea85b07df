"""open_detector: the model on the Edge TPU or the CPU, its decoder chosen at load time."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import structlog

from agent import paths
from agent.config import ModelConfig
from agent.detect.decoders import Decoder, OutputSpec, choose_decoder, describe
from agent.detect.labels import load_labels
from agent.detect.model_file import ModelFile, read_model_file
from agent.detect.preprocess import InputSpec, as_rgb, fit, input_table
from agent.detect.runtime import (
    DelegateLoader,
    EdgeTpuUnavailable,
    Importer,
    default_delegate_loader,
    edgetpu_library,
    interpreter_module,
    load_edgetpu_delegate,
    make_interpreter,
)
from agent.detect.types import Detection, DetectorInfo
from agent.errors import AcceleratorError, AgentError, ModelError, OperationalError

log = structlog.get_logger(__name__)

_FAMILIES = "an SSD with TFLite_Detection_PostProcess outputs, or a raw YOLOv5/YOLOv8 export"


def _bundled(configured: str, name: str) -> Path:
    return Path(configured) if configured else paths.bundled_models_dir() / name


def model_paths(model: ModelConfig) -> tuple[Path, Path, Path]:
    """The CPU model, the Edge TPU model and the labels; empty settings mean the bundled ones.

    A custom model.path without a model.edgetpu_path stands for both: the bundled
    Edge TPU model belongs to the bundled labels and must not replace it.
    """
    edgetpu = model.edgetpu_path or model.path
    return (_bundled(model.path, paths.DEMO_MODEL),
            _bundled(edgetpu, paths.DEMO_EDGETPU_MODEL),
            _bundled(model.labels, paths.DEMO_LABELS))


class TfliteDetector:
    """One interpreter, built once and reused for every frame."""

    def __init__(self, interpreter: Any, model: ModelFile, labels: tuple[str, ...],
                 labels_path: Path, device: str, fallback_reason: str = "") -> None:
        self.interpreter = interpreter
        self.labels = labels
        self.input = _input_spec(interpreter, model.path)
        outputs = _output_specs(interpreter)
        decoder = choose_decoder(outputs, labels)
        if decoder is None:
            raise ModelError(f"model {model.path} is not a detector this agent reads "
                             f"(outputs: {describe(outputs)})", fix="use " + _FAMILIES)
        if decoder.num_classes is None and decoder.layout.startswith("ssd"):
            decoder.num_classes = model.postprocess_classes
        if decoder.num_classes is not None and decoder.num_classes != len(labels):
            raise ModelError(
                f"label file {labels_path} has {len(labels)} labels but model {model.path} "
                f"has {decoder.num_classes} classes",
                fix="use the label file that was exported with the model (one label per class)")
        decoder.input_size = (self.input.width, self.input.height)
        self.decoder: Decoder = decoder
        self._table = input_table(self.input, decoder.float_range)
        # Most uint8 models take pixels as they are: then no lookup at all.
        self._identity = bool(np.array_equal(self._table, np.arange(256)))
        self._output_indices = [d["index"] for d in interpreter.get_output_details()]
        self.info = DetectorInfo(model_path=str(model.path), device=device,
                                 input_size=(self.input.width, self.input.height),
                                 layout=decoder.layout, fallback_reason=fallback_reason)

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, Any]:
        pixels, placement = fit(as_rgb(image), self.input.width, self.input.height,
                                self.decoder.resize)
        if self._identity:
            return pixels[None], placement
        return np.take(self._table, pixels)[None], placement

    def invoke(self, tensor: np.ndarray) -> list[np.ndarray]:
        try:
            self.interpreter.set_tensor(self.input.index, tensor)
            self.interpreter.invoke()
        except (RuntimeError, ValueError) as exc:
            if self.info.device == "edgetpu":
                raise AcceleratorError(f"the Edge TPU stopped answering: {exc}",
                                       fix="check the Coral's cable and power") from exc
            raise OperationalError(f"inference failed: {exc}") from exc
        return [self.interpreter.get_tensor(i) for i in self._output_indices]

    def detect(self, image: np.ndarray) -> list[Detection]:
        tensor, placement = self.prepare(image)
        raw = self.decoder.decode(self.invoke(tensor))
        boxes = placement.to_frame(raw.boxes)
        detections = []
        for box, class_id, score in zip(boxes, raw.class_ids, raw.scores):
            cid = int(class_id)
            label = self.labels[cid] if 0 <= cid < len(self.labels) else ""
            ymin, xmin, ymax, xmax = (float(v) for v in box)
            detections.append(Detection(class_id=cid, label=label, score=float(score),
                                        box=(ymin, xmin, ymax, xmax)))
        return detections

    def close(self) -> None:
        self.interpreter = None


def _input_spec(interpreter: Any, path: Path) -> InputSpec:
    details = interpreter.get_input_details()
    shape = tuple(int(v) for v in details[0]["shape"]) if details else ()
    if len(details) != 1 or len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
        raise ModelError(f"model {path} is not an image detector (inputs: "
                         + ", ".join(str(list(d["shape"])) for d in details) + ")",
                         fix="use " + _FAMILIES + " taking one [1, H, W, 3] image")
    dtype = np.dtype(details[0]["dtype"])
    if dtype not in (np.uint8, np.int8, np.float32):
        raise ModelError(f"model {path} takes {dtype.name} images",
                         fix="use a model with a uint8, int8 or float32 image input")
    scale, zero_point = details[0]["quantization"]
    return InputSpec(index=details[0]["index"], width=shape[2], height=shape[1], dtype=dtype,
                     scale=float(scale), zero_point=int(zero_point))


def _signature_names(interpreter: Any) -> dict[int, str]:
    """Tensor index -> signature output name, when the model has exactly one signature."""
    try:
        signatures = interpreter.get_signature_list()
        if len(signatures) != 1:
            return {}
        runner = interpreter.get_signature_runner(next(iter(signatures)))
        return {d["index"]: name for name, d in runner.get_output_details().items()}
    except (AttributeError, ValueError, RuntimeError):
        return {}


def _output_specs(interpreter: Any) -> list[OutputSpec]:
    names = _signature_names(interpreter)
    specs = []
    for position, d in enumerate(interpreter.get_output_details()):
        scale, zero_point = d["quantization"]
        specs.append(OutputSpec(
            index=position, name=names.get(d["index"], d["name"]),
            shape=tuple(int(v) for v in d["shape"]), dtype=np.dtype(d["dtype"]),
            scale=float(scale), zero_point=int(zero_point), from_signature=d["index"] in names))
    return specs


def _one_model(model: ModelConfig) -> bool:
    """Whether model.path and model.edgetpu_path name the same file (as `--model PATH` sets them).

    That file is then the one model to run: its content, not model.device, decides where it runs.
    """
    return bool(model.path) and Path(model.path) == Path(model.edgetpu_path)


def _no_tpu_for(path: Path, exc: AcceleratorError) -> AcceleratorError:
    reason = exc.reason if isinstance(exc, EdgeTpuUnavailable) else exc.message
    return AcceleratorError(
        f"model {path} is compiled for the Edge TPU and no Edge TPU is available ({reason})",
        fix="plug in a Coral, install libedgetpu1-std, "
            "or use the CPU model: model.path without _edgetpu")


def _select(model: ModelConfig, loader: DelegateLoader, cpu_path: Path,
            edgetpu_path: Path) -> tuple[ModelFile, Any, str]:
    """The model file to run, its Edge TPU delegate (None: CPU) and, for auto, why not the Edge TPU.

    Every model file is read and checked before the delegate is touched, so a missing or
    damaged file is reported as such (exit 2) whether or not a Coral is there.
    """
    if model.device == "edgetpu":
        if not _one_model(model) and not edgetpu_path.exists():
            raise ModelError(f"Edge TPU model {edgetpu_path} does not exist",
                             fix="set model.edgetpu_path to an _edgetpu.tflite file "
                                 "compiled with edgetpu_compiler")
        file = read_model_file(edgetpu_path)
        if not file.edgetpu_compiled:
            if _one_model(model):
                raise ModelError(f"model {edgetpu_path} is not compiled for the Edge TPU",
                                 fix="compile it with edgetpu_compiler and pass the _edgetpu.tflite "
                                     "it writes, or use --device auto or cpu to run it on the CPU")
            log.warning("model.edgetpu_path is not compiled for the Edge TPU; "
                        "it will run on the CPU through the delegate", path=str(edgetpu_path))
        return file, load_edgetpu_delegate(model.edgetpu_device, loader), ""
    cpu_file = read_model_file(cpu_path)
    if cpu_file.edgetpu_compiled:
        # The model given is the Edge TPU's: it runs there or not at all.
        if model.device == "cpu":
            raise AcceleratorError(f"model {cpu_path} is compiled for the Edge TPU and "
                                   "model.device is cpu",
                                   fix="use the CPU model: model.path without _edgetpu, "
                                       "or set model.device = auto")
        try:
            return cpu_file, load_edgetpu_delegate(model.edgetpu_device, loader), ""
        except AcceleratorError as exc:
            raise _no_tpu_for(cpu_path, exc) from exc
    if model.device == "cpu" or _one_model(model):
        # A CPU model chosen as the one to run: no Edge TPU, and nothing to warn about.
        return cpu_file, None, ""
    try:
        delegate = load_edgetpu_delegate(model.edgetpu_device, loader)
    except AcceleratorError as exc:
        return cpu_file, None, str(exc)
    if not edgetpu_path.exists():
        return cpu_file, None, f"an Edge TPU is there but no Edge TPU model at {edgetpu_path}"
    file = read_model_file(edgetpu_path)
    if not file.edgetpu_compiled:
        log.warning("model.edgetpu_path is not compiled for the Edge TPU; "
                    "it will run on the CPU through the delegate", path=str(edgetpu_path))
    return file, delegate, ""


def open_detector(model: ModelConfig, *, delegate_loader: DelegateLoader | None = None,
                  importer: Importer = importlib.import_module) -> TfliteDetector:
    """Load the model once; ModelError (2) or AcceleratorError (3) with a fix on failure."""
    module: ModuleType = interpreter_module(importer)
    loader = delegate_loader or default_delegate_loader(module)
    cpu_path, edgetpu_path, labels_path = model_paths(model)
    file, delegate, fallback = _select(model, loader, cpu_path, edgetpu_path)
    device = "edgetpu" if delegate is not None else "cpu"
    if fallback:
        log.warning("Edge TPU not used; running the CPU model", reason=fallback,
                    model=str(file.path))
    labels = load_labels(labels_path)
    threads = model.threads or os.cpu_count() or 1
    interpreter = make_interpreter(module, str(file.path), threads=threads,
                                   delegates=[delegate] if delegate is not None else None)
    detector = TfliteDetector(interpreter, file, labels, labels_path, device, fallback)
    log.info("detector loaded", model=str(file.path), device=device,
             layout=detector.info.layout, input_size=detector.info.input_size, threads=threads)
    return detector


def probe_accelerator(model: ModelConfig,
                      delegate_loader: DelegateLoader | None = None) -> tuple[bool, str]:
    """Whether an Edge TPU is usable now, and one line saying why or why not."""
    try:
        loader = delegate_loader or default_delegate_loader()
        load_edgetpu_delegate(model.edgetpu_device, loader)
    except AgentError as exc:
        return False, str(exc)
    where = model.edgetpu_device or "first device found"
    edgetpu_path = model_paths(model)[1]
    if not edgetpu_path.exists():
        return True, (f"Edge TPU delegate loaded from {edgetpu_library()} ({where}), "
                      f"but no Edge TPU model at {edgetpu_path}; auto will use the CPU model")
    if _one_model(model):
        try:
            compiled = read_model_file(edgetpu_path).edgetpu_compiled
        except ModelError as exc:
            return True, f"Edge TPU delegate loaded from {edgetpu_library()} ({where}), but {exc}"
        if not compiled:
            return True, (f"Edge TPU delegate loaded from {edgetpu_library()} ({where}), "
                          f"but model {edgetpu_path} is not compiled for it; it runs on the CPU")
    return True, f"Edge TPU delegate loaded from {edgetpu_library()} ({where})"
