"""The TFLite runtime choice and the Edge TPU delegate, against a stand-in libedgetpu."""

from __future__ import annotations

import ctypes
import importlib
from types import ModuleType

import pytest
from fake_edgetpu import build_fake_edgetpu

from agent.detect import runtime
from agent.errors import EXIT_HARDWARE, AcceleratorError, ConfigError, ModelError, OperationalError


@pytest.fixture(scope="module")
def fake_lib(tmp_path_factory):
    return build_fake_edgetpu(tmp_path_factory.mktemp("edgetpu"))


def test_prefers_ai_edge_litert():
    asked = []

    def importer(name: str) -> ModuleType:
        asked.append(name)
        return importlib.import_module(name)

    module = runtime.interpreter_module(importer)
    assert module.__name__ == "ai_edge_litert.interpreter"
    assert asked == ["ai_edge_litert.interpreter"]


def test_falls_back_to_tflite_runtime():
    fallback = ModuleType("tflite_runtime.interpreter")

    def importer(name: str) -> ModuleType:
        if name.startswith("ai_edge_litert"):
            raise ImportError("No module named 'ai_edge_litert'")
        return fallback

    assert runtime.interpreter_module(importer) is fallback


def test_no_runtime_at_all():
    def importer(name: str) -> ModuleType:
        raise ImportError(f"No module named {name!r}")

    with pytest.raises(OperationalError, match="no TFLite runtime") as caught:
        runtime.interpreter_module(importer)
    assert "pip install ai-edge-litert" in str(caught.value)


@pytest.mark.parametrize("selector,options", [
    ("", {}), ("usb", {"device": "usb"}), ("usb:1", {"device": "usb:1"}),
    ("pci", {"device": "pci"}), ("pci:0", {"device": "pci:0"}),
])
def test_delegate_options(selector, options):
    assert runtime.delegate_options(selector) == options


@pytest.mark.parametrize("selector", ["usb:", "usb:x", "pcie", "gpu:0", "usb:1:2"])
def test_bad_selector(selector):
    with pytest.raises(ConfigError, match="not a device selector"):
        runtime.delegate_options(selector)


def test_missing_libedgetpu_is_reported_before_the_runtime_is_asked():
    asked = []

    class Module:
        @staticmethod
        def load_delegate(library, options):
            asked.append(library)

    def cdll(name):
        raise OSError(f"{name}: cannot open shared object file")

    loader = runtime.default_delegate_loader(Module, cdll=cdll)
    with pytest.raises(AcceleratorError, match="libedgetpu not installed") as caught:
        runtime.load_edgetpu_delegate("", loader)
    assert "apt install libedgetpu1-std" in str(caught.value)
    assert caught.value.exit_code == EXIT_HARDWARE
    assert asked == []


def _fake_loader(fake_lib):
    """The default loader, pointed at the stand-in library instead of libedgetpu.so.1."""
    inner = runtime.default_delegate_loader(runtime.interpreter_module())
    return lambda library, options: inner(str(fake_lib), options)


def test_real_load_delegate_with_device_option(fake_lib, tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("FAKE_EDGETPU_LOG", str(log))
    delegate = runtime.load_edgetpu_delegate("usb:0", _fake_loader(fake_lib))
    assert delegate is not None
    assert log.read_text().splitlines() == ["device=usb:0", "create"]


def test_no_edgetpu_matching_selector(fake_lib):
    with pytest.raises(AcceleratorError, match="no Edge TPU found matching 'pci:1'") as caught:
        runtime.load_edgetpu_delegate("pci:1", _fake_loader(fake_lib))
    assert "lsusb" in str(caught.value) and caught.value.exit_code == EXIT_HARDWARE


def test_edgetpu_library_name_on_linux():
    assert runtime.edgetpu_library() == "libedgetpu.so.1"


def test_real_library_absent_on_this_machine():
    try:
        ctypes.CDLL("libedgetpu.so.1")
    except OSError:
        pass
    else:
        pytest.skip("this machine has libedgetpu installed")
    with pytest.raises(AcceleratorError, match="libedgetpu not installed"):
        runtime.load_edgetpu_delegate("", runtime.default_delegate_loader())


def test_delegate_error_with_several_lines_is_one_line():
    def loader(library, options):
        raise ValueError("Failed to load delegate from libedgetpu.so.1\nsee the log\n")

    with pytest.raises(AcceleratorError) as caught:
        runtime.load_edgetpu_delegate("", loader)
    assert "\n" not in str(caught.value)
    assert "(Failed to load delegate from libedgetpu.so.1)" in str(caught.value)


def test_interpreter_errors_become_model_errors(tmp_path):
    class Module:
        @staticmethod
        def Interpreter(**kwargs):
            raise RuntimeError("Encountered unresolved custom op: Foo.\nNode number 3 failed")

    with pytest.raises(ModelError, match="cannot be loaded: Encountered unresolved custom op: Foo") as caught:
        runtime.make_interpreter(Module, str(tmp_path / "m.tflite"), threads=1)
    assert "\n" not in str(caught.value) and "Node number" not in str(caught.value)
