"""Camera buffer conversions: YUV420 with stride padding, BGR order."""

from __future__ import annotations

import numpy as np
import pytest
from camera_fakes import rgb_to_yuv420

from agent.camera.convert import bgr_to_rgb, xbgr_to_rgb, yuv420_to_rgb

PRIMARIES = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255),
             "white": (255, 255, 255), "black": (0, 0, 0), "grey": (128, 128, 128)}


@pytest.mark.parametrize("name", list(PRIMARIES))
def test_yuv420_solid_colours(name):
    rgb = np.zeros((8, 12, 3), np.uint8)
    rgb[:] = PRIMARIES[name]
    out = yuv420_to_rgb(rgb_to_yuv420(rgb), 12, 8)
    assert out.shape == (8, 12, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - rgb.astype(int)).max() <= 2


def test_yuv420_with_stride_padding_and_layout():
    rng = np.random.default_rng(0)
    # 2x2 blocks of one colour so chroma subsampling loses nothing.
    blocks = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    rgb = np.repeat(np.repeat(blocks, 2, axis=0), 2, axis=1)
    buffer = rgb_to_yuv420(rgb, stride=16)
    assert buffer.shape == (12, 16)
    out = yuv420_to_rgb(buffer, 12, 8)
    assert np.abs(out.astype(int) - rgb.astype(int)).max() <= 3


def test_yuv420_too_small_buffer():
    with pytest.raises(ValueError, match="does not hold"):
        yuv420_to_rgb(np.zeros((10, 12), np.uint8), 12, 8)


def test_bgr_and_xbgr_order():
    bgr = np.array([[[255, 0, 0], [0, 0, 255], [9, 9, 9]]], np.uint8)  # blue, red, pad
    assert bgr_to_rgb(bgr, width=2).tolist() == [[[0, 0, 255], [255, 0, 0]]]
    xbgr = np.array([[[0, 255, 0, 255], [10, 20, 30, 255]]], np.uint8)
    assert xbgr_to_rgb(xbgr).tolist() == [[[0, 255, 0], [30, 20, 10]]]
