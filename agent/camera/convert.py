"""Pixel format conversions for camera buffers, to HxWx3 uint8 RGB."""

from __future__ import annotations

import numpy as np


def bgr_to_rgb(image: np.ndarray, width: int | None = None) -> np.ndarray:
    """[B, G, R] pixels (libcamera's "RGB888", OpenCV's default) -> RGB; drops stride padding."""
    if width is not None:
        image = image[:, :width]
    return np.ascontiguousarray(image[:, :, 2::-1])


def xbgr_to_rgb(image: np.ndarray, width: int | None = None) -> np.ndarray:
    """libcamera's "XRGB8888" ([B, G, R, X] in memory) -> RGB."""
    return bgr_to_rgb(image[:, :, :3], width)


def yuv420_to_rgb(buffer: np.ndarray, width: int, height: int) -> np.ndarray:
    """A planar I420 buffer as picamera2 returns it, shape (height*3/2, stride), -> RGB.

    The U and V planes each hold height/2 rows of stride/2 bytes. The colour
    matrix is BT.601 full range (the sYCC space the preview configuration asks
    libcamera for).
    """
    rows, stride = buffer.shape[:2]
    if rows < height * 3 // 2 or stride < width or height % 2 or width % 2:
        raise ValueError(f"YUV420 buffer {buffer.shape} does not hold a {width}x{height} image")
    flat = buffer.reshape(-1)
    plane = stride * height
    quarter = (stride // 2) * (height // 2)
    y = buffer[:height, :width].astype(np.float32)
    u = flat[plane:plane + quarter].reshape(height // 2, stride // 2)[:, : width // 2]
    v = flat[plane + quarter:plane + 2 * quarter].reshape(height // 2, stride // 2)[:, : width // 2]
    u = np.repeat(np.repeat(u.astype(np.float32) - 128.0, 2, axis=0), 2, axis=1)
    v = np.repeat(np.repeat(v.astype(np.float32) - 128.0, 2, axis=0), 2, axis=1)
    rgb = np.empty((height, width, 3), dtype=np.float32)
    rgb[..., 0] = y + 1.402 * v
    rgb[..., 1] = y - 0.344136 * u - 0.714136 * v
    rgb[..., 2] = y + 1.772 * u
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)

