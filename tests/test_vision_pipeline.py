"""Camera spec -> frames -> bundled model, as the service wires them (real interpreter)."""

from __future__ import annotations

import pytest
from PIL import Image
from vision_support import score_frames

from agent import paths
from agent.camera.sources import open_source
from agent.config import CameraConfig, DetectionConfig, ModelConfig
from agent.detect.detector import open_detector

pytestmark = pytest.mark.skipif(
    not (paths.bundled_models_dir() / paths.DEMO_MODEL).exists(), reason="no bundled model")

MIN_SCORE = DetectionConfig().min_score


@pytest.fixture(scope="module")
def detector():
    det = open_detector(ModelConfig(device="cpu", threads=1))
    yield det
    det.close()


def test_folder_of_saved_frames_gives_the_same_detections(detector, tmp_path):
    """PNG is lossless: frames saved and read back through dir: detect exactly alike."""
    source = open_source("synthetic:5", CameraConfig(), size=(320, 240))
    direct = []
    for i in range(120):
        frame = source.read()
        if i % 15 == 14:  # the basket starts empty: sample as it fills
            Image.fromarray(frame.image).save(tmp_path / f"frame_{i:03d}.png")
            direct.append(detector.detect(frame.image))
    assert sum(len(found) for found in direct) >= 3  # the comparison is not of empty lists
    replay = open_source(f"dir:{tmp_path}", CameraConfig(), size=detector.info.input_size)
    for expected in direct:
        frame = replay.read()
        assert frame is not None and frame.image.shape == (240, 320, 3)
        assert detector.detect(frame.image) == expected
    assert replay.read() is None


def test_synthetic_spec_frames_match_truth(detector):
    """Clear frames of a seed the model never saw: found products sit on the truth boxes."""
    source = open_source("synthetic:4242", CameraConfig(), size=detector.info.input_size)
    assert source.read().image.shape[:2] == detector.info.input_size[::-1]
    objects, matched, found = score_frames(detector, source, 200, 5, MIN_SCORE)
    assert objects > 40
    assert matched / objects >= 0.85
    assert found and matched / found >= 0.85
