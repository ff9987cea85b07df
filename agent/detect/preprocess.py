"""From an RGB frame of any size to the model's input tensor, and boxes back to the frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

LETTERBOX_FILL = 114  # the grey Ultralytics pads with

# Float ranges a model's input is commonly trained on; a quantized input's scale and zero
# point say which one (approximately, since they come from calibration data).
_KNOWN_RANGES = ((0.0, 1.0), (-1.0, 1.0), (0.0, 255.0))


@dataclass(frozen=True)
class InputSpec:
    index: int
    width: int
    height: int
    dtype: np.dtype
    scale: float = 0.0
    zero_point: int = 0


@dataclass(frozen=True)
class Placement:
    """Where the frame landed inside the input, as fractions of the input."""

    top: float = 0.0
    left: float = 0.0
    height: float = 1.0
    width: float = 1.0

    def to_frame(self, boxes: np.ndarray) -> np.ndarray:
        """Boxes relative to the model input -> relative to the original frame."""
        if self == Placement():
            return boxes
        out = np.empty_like(boxes)
        out[:, 0] = (boxes[:, 0] - self.top) / self.height
        out[:, 2] = (boxes[:, 2] - self.top) / self.height
        out[:, 1] = (boxes[:, 1] - self.left) / self.width
        out[:, 3] = (boxes[:, 3] - self.left) / self.width
        return np.clip(out, 0.0, 1.0)


def as_rgb(image: np.ndarray) -> np.ndarray:
    """An HxWx3 uint8 array; gray and RGBA frames are accepted, anything else is a ValueError."""
    if image.dtype != np.uint8:
        raise ValueError(f"frame must be uint8, got {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 4:
        return image[:, :, :3]
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"frame must be HxWx3, got shape {image.shape}")


def fit(image: np.ndarray, width: int, height: int, mode: str) -> tuple[np.ndarray, Placement]:
    """Resize (stretch) or letterbox an RGB image to width x height."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image, Placement()
    if mode == "stretch":
        stretched = Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR)
        return np.asarray(stretched), Placement()
    ratio = min(width / w, height / h)
    new_w, new_h = max(1, round(w * ratio)), max(1, round(h * ratio))
    resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR))
    canvas = np.full((height, width, 3), LETTERBOX_FILL, dtype=np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    canvas[top:top + new_h, left:left + new_w] = resized
    return canvas, Placement(top / height, left / width, new_h / height, new_w / width)


def quantized_range(spec: InputSpec) -> tuple[float, float]:
    """The float range the input's scale and zero point were calibrated on, snapped to a known one."""
    info = np.iinfo(spec.dtype)
    low = spec.scale * (info.min - spec.zero_point)
    high = spec.scale * (info.max - spec.zero_point)
    return min(_KNOWN_RANGES, key=lambda r: abs(r[0] - low) + abs(r[1] - high))


def to_input(pixels: np.ndarray, spec: InputSpec, float_range: tuple[float, float]) -> np.ndarray:
    """uint8 RGB pixels -> the input tensor's dtype, through its scale and zero point."""
    batch = pixels[None, ...]
    if spec.dtype == np.float32:
        low, high = float_range
        return (batch.astype(np.float32) * ((high - low) / 255.0) + low).astype(np.float32)
    if spec.scale == 0.0:
        # No quantization parameters: uint8 takes pixels as they are, int8 centred on zero.
        if spec.dtype == np.uint8:
            return batch
        return (batch.astype(np.int16) - 128).astype(spec.dtype)
    low, high = quantized_range(spec)
    real = batch.astype(np.float32) * ((high - low) / 255.0) + low
    info = np.iinfo(spec.dtype)
    # Round half up: a zero point of 127 with scale 1/127.5 puts every pixel on a half
    # step, and round-half-even would map neighbouring pixels to the same level.
    quant = np.floor(real / spec.scale + spec.zero_point + 0.5)
    return np.clip(quant, info.min, info.max).astype(spec.dtype)


def input_table(spec: InputSpec, float_range: tuple[float, float]) -> np.ndarray:
    """to_input for every pixel value, so a frame converts with one table lookup."""
    values = np.arange(256, dtype=np.uint8).reshape(1, 256, 1)
    return to_input(values, spec, float_range).reshape(256)
