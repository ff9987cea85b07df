"""Reading .tflite files before the interpreter: identifier, truncation, custom ops."""

from __future__ import annotations

import numpy as np
import pytest
from tflite_builder import ModelSpec, build, ssd_outputs

from agent.detect.model_file import EDGETPU_CUSTOM_OP, read_model_file
from agent.errors import EXIT_BAD_INPUT, ModelError

SSD = ssd_outputs([[0.1, 0.2, 0.5, 0.6]], [1], [0.9], 1)


def test_cpu_model_has_no_custom_ops(tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(build(ModelSpec(outputs=SSD)))
    info = read_model_file(path)
    assert info.custom_ops == ()
    assert not info.edgetpu_compiled
    assert info.size == path.stat().st_size


def test_edgetpu_custom_op_is_found(tmp_path):
    path = tmp_path / "m_edgetpu.tflite"
    path.write_bytes(build(ModelSpec(outputs=SSD, custom_op=EDGETPU_CUSTOM_OP)))
    info = read_model_file(path)
    assert info.custom_ops == (EDGETPU_CUSTOM_OP,)
    assert info.edgetpu_compiled


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="does not exist") as caught:
        read_model_file(tmp_path / "nope.tflite")
    assert caught.value.exit_code == EXIT_BAD_INPUT


def test_directory(tmp_path):
    with pytest.raises(ModelError, match="is a directory"):
        read_model_file(tmp_path)


@pytest.mark.parametrize("content", [b"", b"TFL3", b"hello world, not a model", b"\x00" * 64])
def test_not_a_tflite_file(tmp_path, content):
    path = tmp_path / "m.tflite"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="not a TFLite model"):
        read_model_file(path)


@pytest.mark.parametrize("keep", [12, 100, 0.5])
def test_truncated_file(tmp_path, keep):
    data = build(ModelSpec(outputs=SSD, custom_op=EDGETPU_CUSTOM_OP))
    cut = int(len(data) * keep) if isinstance(keep, float) else keep
    path = tmp_path / "m.tflite"
    path.write_bytes(data[:cut])
    with pytest.raises(ModelError, match="truncated or damaged"):
        read_model_file(path)


def test_garbage_offsets_after_identifier(tmp_path):
    rng = np.random.default_rng(3)
    body = bytearray(rng.integers(0, 256, 400, dtype=np.uint8).tobytes())
    body[0:4] = (10_000).to_bytes(4, "little")
    body[4:8] = b"TFL3"
    path = tmp_path / "m.tflite"
    path.write_bytes(bytes(body))
    with pytest.raises(ModelError, match="truncated or damaged"):
        read_model_file(path)


def test_postprocess_classes_of_the_bundled_model():
    from agent import paths

    path = paths.bundled_models_dir() / paths.DEMO_MODEL
    if not path.exists():
        pytest.skip("no bundled model")
    info = read_model_file(path)
    assert "TFLite_Detection_PostProcess" in info.custom_ops and not info.edgetpu_compiled
    labels = (paths.bundled_models_dir() / paths.DEMO_LABELS).read_text().split()
    assert info.postprocess_classes == len(labels)


def test_no_postprocess_op_means_no_class_count(tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(build(ModelSpec(outputs=SSD)))
    assert read_model_file(path).postprocess_classes is None
