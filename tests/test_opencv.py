"""video: files and v4l2: webcams through OpenCV (a real small video written here)."""

from __future__ import annotations

import numpy as np
import pytest
from camera_fakes import importer_for

from agent.camera.opencv import import_cv2, open_v4l2, open_video
from agent.errors import EXIT_BAD_INPUT, EXIT_HARDWARE, CameraError, CameraInputError

cv2 = pytest.importorskip("cv2")


@pytest.fixture
def video(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    assert writer.isOpened()
    for i in range(5):
        bgr = np.zeros((48, 64, 3), np.uint8)
        bgr[:, :, 2] = 200  # red, in OpenCV's BGR order
        bgr[:8, : (i + 1) * 8] = 255  # a white bar that grows each frame
        writer.write(bgr)
    writer.release()
    return path


def test_video_frames_in_rgb_then_end(video):
    ticks = iter(range(100))
    source = open_video(video, clock=lambda: float(next(ticks)))
    assert source.live is False and source.name == f"video:{video}"
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    assert len(frames) == 5
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert frames[0].image.shape == (48, 64, 3)
    r, g, b = frames[0].image[30, 30].tolist()
    assert r > 170 and g < 40 and b < 40
    white = [int((f.image[3, :, 1] > 200).sum()) for f in frames]
    assert white == sorted(white) and white[0] < white[-1]
    source.close()
    assert source.read() is None


def test_missing_video(tmp_path):
    with pytest.raises(CameraInputError, match="does not exist") as caught:
        open_video(tmp_path / "none.mp4")
    assert caught.value.exit_code == EXIT_BAD_INPUT


def test_undecodable_video(tmp_path):
    path = tmp_path / "junk.mp4"
    path.write_bytes(b"\x00\x01 not a video" * 100)
    with pytest.raises(CameraInputError, match="cannot be decoded"):
        open_video(path)


def test_missing_opencv_says_how_to_install(video):
    with pytest.raises(CameraInputError, match="OpenCV is not installed") as caught:
        open_video(video, importer=importer_for())
    assert "pip install 'basketagent[webcam]'" in str(caught.value)
    with pytest.raises(CameraInputError):
        import_cv2(importer_for())


def test_webcam_device_missing(tmp_path):
    with pytest.raises(CameraError, match="webcam .* not found") as caught:
        open_v4l2(str(tmp_path / "video9"), 640, 480)
    assert caught.value.exit_code == EXIT_HARDWARE


def test_webcam_node_that_is_not_a_camera(tmp_path):
    node = tmp_path / "video0"
    node.write_bytes(b"")
    with pytest.raises(CameraError, match="cannot be opened"):
        open_v4l2(str(node), 640, 480)
