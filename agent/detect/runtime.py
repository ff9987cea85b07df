"""The TFLite runtime and the Edge TPU delegate, with their failures translated once.

ai-edge-litert is preferred, tflite-runtime is the fallback. The Edge TPU
delegate is loaded through a ``DelegateLoader`` so tests can stand in for a
Coral; the default one checks for libedgetpu with ctypes first, because
ai-edge-litert's ``load_delegate`` on a missing library also prints an
"Exception ignored in Delegate.__del__" traceback.
"""

from __future__ import annotations

import ctypes
import importlib
import platform
from collections.abc import Callable
from types import ModuleType
from typing import Any

from agent.detect.native_stderr import native_stderr_logged
from agent.errors import AcceleratorError, ConfigError, ModelError, OperationalError

RUNTIME_MODULES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")

DelegateLoader = Callable[[str, dict[str, str]], Any]
Importer = Callable[[str], ModuleType]

class EdgeTpuUnavailable(AcceleratorError):
    """No Edge TPU delegate; ``reason`` is the cause in a few words, without the runtime's detail."""

    def __init__(self, message: str, *, reason: str, fix: str) -> None:
        super().__init__(message, fix=fix)
        self.reason = reason


_INSTALL_FIX = ("install the Edge TPU runtime: apt install libedgetpu1-std "
                "(from the Coral apt repository), then replug the Coral")


def first_line(exc: BaseException) -> str:
    """An exception as one line: runtimes append tracebacks and hints on later lines."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def interpreter_module(importer: Importer = importlib.import_module) -> ModuleType:
    """The first TFLite interpreter module that imports."""
    errors = []
    for name in RUNTIME_MODULES:
        try:
            return importer(name)
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
    raise OperationalError("no TFLite runtime is installed (" + "; ".join(errors) + ")",
                           fix="pip install ai-edge-litert (or tflite-runtime)")


def edgetpu_library() -> str:
    return {"Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}.get(
        platform.system(), "libedgetpu.so.1")


def delegate_options(selector: str) -> dict[str, str]:
    """model.edgetpu_device -> the delegate's options: "" any, usb, usb:N, pci, pci:N."""
    selector = selector.strip()
    if not selector:
        return {}
    kind, _, number = selector.partition(":")
    if kind not in ("usb", "pci") or (number and not number.isdigit()) or selector.endswith(":"):
        raise ConfigError(f"model.edgetpu_device = {selector!r} is not a device selector",
                          fix="use '', usb, usb:N, pci or pci:N")
    return {"device": selector}


def default_delegate_loader(
    module: ModuleType | None = None,
    cdll: Callable[[str], Any] = ctypes.CDLL,
) -> DelegateLoader:
    """A loader that reports a missing libedgetpu cleanly before asking the runtime."""

    def load(library: str, options: dict[str, str]) -> Any:
        try:
            cdll(library)
        except OSError as exc:
            raise EdgeTpuUnavailable(f"libedgetpu not installed ({library} cannot be loaded)",
                                     reason="libedgetpu not installed", fix=_INSTALL_FIX) from exc
        runtime = module or interpreter_module()
        return runtime.load_delegate(library, options)

    return load


def load_edgetpu_delegate(selector: str, loader: DelegateLoader) -> Any:
    """The Edge TPU delegate, or AcceleratorError saying why there is none."""
    options = delegate_options(selector)
    library = edgetpu_library()
    try:
        return loader(library, options)
    except AcceleratorError:
        raise
    except (ValueError, RuntimeError, OSError) as exc:
        which = f" matching {selector!r}" if selector else ""
        raise EdgeTpuUnavailable(
            f"no Edge TPU found{which} ({first_line(exc)})",
            reason=f"no Coral{which} found",
            fix="plug the Coral in (USB 3 port), check `lsusb` for 18d1:9302 or 1a6e:089a, "
                "or set model.device = cpu",
        ) from exc


def make_interpreter(module: ModuleType, model_path: str, *, threads: int,
                     delegates: list[Any] | None = None) -> Any:
    """A ready interpreter (tensors allocated); runtime errors become ModelError."""
    try:
        with native_stderr_logged():
            interpreter = module.Interpreter(model_path=model_path, num_threads=threads,
                                             experimental_delegates=delegates or None)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"model file {model_path} cannot be loaded: {first_line(exc)}",
                         fix="use a TFLite detector model exported for this runtime") from exc
    return interpreter
