"""A stand-in picamera2 module and camera-like buffers, for machines without a Pi camera."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np


def rgb_to_yuv420(rgb: np.ndarray, stride: int | None = None) -> np.ndarray:
    """The inverse, for building camera-like buffers (BT.601 full range, 2x2 averaged chroma)."""
    height, width = rgb.shape[:2]
    stride = stride or width
    f = rgb.astype(np.float32)
    y = 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]
    u = 128.0 + (f[..., 2] - y) / 1.772
    v = 128.0 + (f[..., 0] - y) / 1.402

    def half(plane: np.ndarray) -> np.ndarray:
        return plane.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))

    out = np.zeros(height * 3 // 2 * stride, dtype=np.uint8)
    ys = np.zeros((height, stride), np.float32)
    ys[:, :width] = y
    out[: height * stride] = np.clip(np.rint(ys), 0, 255).reshape(-1)
    quarter = (stride // 2) * (height // 2)
    for k, plane in enumerate((half(u), half(v))):
        padded = np.zeros((height // 2, stride // 2), np.float32)
        padded[:, : width // 2] = plane
        start = height * stride + k * quarter
        out[start:start + quarter] = np.clip(np.rint(padded), 0, 255).reshape(-1)
    return out.reshape(height * 3 // 2, stride)


class FakeCameraWorld:
    """What the fake libcamera sees: cameras, who holds them, what the ISP allows."""

    def __init__(self, cameras=({"Model": "imx708", "Num": 0},), *, pi4: bool = True,
                 busy: bool = False, image: np.ndarray | None = None, lores_stride_pad: int = 0,
                 actual_format: str | None = None, raw: np.ndarray | None = None):
        self.cameras = list(cameras)
        self.pi4 = pi4
        self.busy = busy
        self.image = image  # the RGB scene, at the lores size
        self.lores_stride_pad = lores_stride_pad
        # libcamera may settle on another format than asked; then capture returns `raw`.
        self.actual_format = actual_format
        self.raw = raw
        self.opened: list[Any] = []


def fake_picamera2_module(world: FakeCameraWorld) -> ModuleType:
    module = ModuleType("picamera2")

    class Picamera2:
        @staticmethod
        def global_camera_info():
            return [dict(c) for c in world.cameras]

        def __init__(self, camera_num: int = 0):
            if world.busy:
                raise RuntimeError("Failed to acquire camera: Device or resource busy")
            self.camera_num = camera_num
            self.configured: dict | None = None
            self.tried: list[str] = []
            self.started = False
            self.stopped = False
            self.closed = False
            world.opened.append(self)

        def create_preview_configuration(self, main=None, lores=None, display="main"):
            return {"main": dict(main or {}), "lores": dict(lores) if lores else None,
                    "display": display}

        def configure(self, config):
            fmt = config["lores"]["format"]
            self.tried.append(fmt)
            if world.pi4 and not fmt.startswith("YUV"):
                raise RuntimeError("lores stream must be YUV")
            if world.actual_format:
                config = {**config, "lores": {**config["lores"], "format": world.actual_format}}
            self.configured = config

        def camera_configuration(self):
            return self.configured

        def start(self):
            self.started = True

        def capture_array(self, name="main"):
            assert name == "lores" and self.started
            lores = self.configured["lores"]
            if world.raw is not None:
                return world.raw
            rgb = world.image
            if lores["format"] == "YUV420":
                width = rgb.shape[1]
                return rgb_to_yuv420(rgb, stride=width + world.lores_stride_pad)
            if lores["format"] == "RGB888":
                return np.ascontiguousarray(rgb[:, :, ::-1])  # libcamera: [B, G, R]
            raise AssertionError(lores["format"])

        def stop(self):
            self.stopped = True

        def close(self):
            self.closed = True

    module.Picamera2 = Picamera2
    return module


def importer_for(**modules: ModuleType):
    """An importer that knows only the given modules, as on a machine with just those."""

    def importer(name: str) -> ModuleType:
        if name in modules:
            return modules[name]
        raise ImportError(f"No module named {name!r}")

    return importer
