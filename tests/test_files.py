"""dir: image folders in name order; unreadable files skipped and logged."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from structlog.testing import capture_logs

from agent.camera.files import DirSource
from agent.errors import CameraInputError


def write(path, colour, size=(8, 6)):
    Image.fromarray(np.full((size[1], size[0], 3), colour, np.uint8)).save(path)


def test_name_order_then_end_with_corrupt_file_skipped(tmp_path):
    write(tmp_path / "b.png", (0, 255, 0))
    write(tmp_path / "a.jpg", (250, 0, 0))
    write(tmp_path / "c.bmp", (0, 0, 255), size=(10, 4))
    (tmp_path / "b2.JPEG").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    ticks = iter([1.0, 2.0, 3.0])
    source = DirSource(tmp_path, clock=lambda: next(ticks))
    with capture_logs() as logs:
        frames = [source.read() for _ in range(4)]
    assert frames[3] is None
    assert [f.index for f in frames[:3]] == [0, 1, 2]
    assert [f.t_mono for f in frames[:3]] == [1.0, 2.0, 3.0]
    assert frames[0].image[0, 0].tolist()[0] > 240  # a.jpg first: red
    assert frames[1].image[0, 0].tolist() == [0, 255, 0]
    assert frames[2].image.shape == (4, 10, 3)
    assert [p.name for p in source.skipped] == ["b2.JPEG"]
    assert any(e["event"] == "image skipped: unreadable" and e["path"].endswith("b2.JPEG")
               for e in logs)
    assert source.read() is None


def test_missing_folder(tmp_path):
    with pytest.raises(CameraInputError, match="does not exist"):
        DirSource(tmp_path / "nope")


def test_file_not_folder(tmp_path):
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(CameraInputError, match="is not a folder"):
        DirSource(tmp_path / "x.png")


def test_folder_without_images(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(CameraInputError, match="has no JPEG, PNG or BMP files"):
        DirSource(tmp_path)
