"""Drawing a basket scene, and what of it a viewer can see.

It feeds the synthetic camera (demo, tests, benchmarks) and the training data
of the bundled demo model, so both see the same products. Everything is drawn
with Pillow polygons (``agent.camera.shapes``) on a cached textured
background; randomness comes only from the ``numpy.random.Generator`` passed
in, so the same generator state gives the same pixels.

A 320x240 frame with six products and a hand takes about 0.7 ms on one x86 core
(the polygons of a product are cached while it stays put).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from agent.camera.shapes import Item, Occluder, Polygon, item_box, item_polygons, occluder_polygons
from agent.detect.boxes import Box

_BACKGROUNDS = 4
_NOISE_AMPLITUDE = 10
# Below this visible fraction an item hidden by the hand is not in the truth.
MIN_VISIBLE = 0.5


@functools.lru_cache(maxsize=16)
def _background(variant: int, size: tuple[int, int]) -> Image.Image:
    """A basket- or shelf-like texture, made once per variant and size from a fixed seed."""
    w, h = size
    rng = np.random.default_rng(1000 + variant)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    period = max(6.0, min(w, h) / 14)
    if variant == 0:  # wicker: woven strips, alternating direction
        cell = ((x // period) + (y // period)) % 2
        stripes = np.where(cell == 0, np.sin(x / period * math.pi), np.sin(y / period * math.pi))
        base, tint = np.array([150, 105, 60]), 0.25
    elif variant == 1:  # wire basket: grey mesh over a dark floor
        mesh = (np.minimum(x % period, y % period) < 2).astype(np.float32)
        stripes = mesh * 2 - 1
        base, tint = np.array([85, 88, 92]), 0.45
    elif variant == 2:  # wooden shelf: planks with grain
        grain = np.sin((y + 4 * np.sin(x / 23.0)) / 2.5) * 0.5 + np.where(
            (y % (period * 4)) < 2, -2.0, 0.0
        )
        stripes = grain
        base, tint = np.array([176, 140, 98]), 0.15
    else:  # plastic crate: pale blue with a grid of holes
        holes = ((x % period) > period * 0.35) & ((y % period) > period * 0.35)
        stripes = np.where(holes, -1.0, 0.3)
        base, tint = np.array([150, 170, 190]), 0.30
    grain_noise = rng.normal(0, 0.08, size=(h, w)).astype(np.float32)
    shade = 1.0 + tint * stripes + grain_noise
    # Darker towards the corners, as inside a basket.
    vignette = 1.0 - 0.25 * (((x / w - 0.5) ** 2 + (y / h - 0.5) ** 2) * 2.5)
    img = base[None, None, :] * (shade * vignette)[..., None]
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


@functools.lru_cache(maxsize=8)
def _noise(size: tuple[int, int]) -> Image.Image:
    """A sensor-noise tile a little larger than the frame; each frame takes a random window."""
    w, h = size
    rng = np.random.default_rng(7)
    tile = rng.integers(0, 2 * _NOISE_AMPLITUDE + 1, size=(h + 32, w + 32, 3), dtype=np.uint8)
    return Image.fromarray(tile, "RGB")


@functools.lru_cache(maxsize=64)
def _brightness_lut(level: int) -> list[int]:
    gain = level / 100
    return [min(255, round(v * gain)) for v in range(256)] * 3


def _draw_item(draw: ImageDraw.ImageDraw, polys: Sequence[Polygon], shadow: float) -> None:
    body = polys[0][0]
    draw.polygon([(x + shadow, y + shadow) for x, y in body], fill=(30, 24, 18))
    for pts, colour in polys:
        draw.polygon(pts, fill=colour)


def render_scene(
    rng: np.random.Generator,
    items: Sequence[Item],
    size: tuple[int, int] = (320, 240),
    occluder: Occluder | None = None,
) -> np.ndarray:
    """Draw ``items`` (later ones on top) and the occluder over them: HxWx3 uint8 RGB.

    ``rng`` picks the background, the light and the sensor noise.
    """
    w, h = size
    variant = int(rng.integers(_BACKGROUNDS))
    level = int(rng.integers(75, 121))  # global brightness, percent
    nx, ny = int(rng.integers(32)), int(rng.integers(32))
    img = _background(variant, size).copy()
    draw = ImageDraw.Draw(img)
    shadow = max(1.0, min(w, h) / 80)
    for item in items:
        _draw_item(draw, item_polygons(item, size), shadow)
    if occluder is not None:
        for pts, colour in occluder_polygons(occluder, size):
            draw.polygon(pts, fill=colour)
    img = img.point(_brightness_lut(level))
    noise = _noise(size).crop((nx, ny, nx + w, ny + h))
    img = ImageChops.add(img, noise, scale=1.0, offset=-_NOISE_AMPLITUDE)
    return np.asarray(img)


def visible_fractions(
    items: Sequence[Item], size: tuple[int, int], occluder: Occluder | None
) -> list[float]:
    """How much of each item's body the occluder leaves visible (1.0 without one)."""
    if occluder is None:
        return [1.0] * len(items)
    hand = Image.new("L", size, 0)
    hand_draw = ImageDraw.Draw(hand)
    for pts, _ in occluder_polygons(occluder, size):
        hand_draw.polygon(pts, fill=255)
    hand_px = np.asarray(hand) > 0
    out = []
    for item in items:
        mask = Image.new("L", size, 0)
        ImageDraw.Draw(mask).polygon(item_polygons(item, size)[0][0], fill=255)
        body = np.asarray(mask) > 0
        total = int(body.sum())
        out.append(1.0 if total == 0 else float((body & ~hand_px).sum()) / total)
    return out


def visible_truth(
    items: Sequence[Item], size: tuple[int, int], occluder: Occluder | None
) -> list[tuple[str, Box]]:
    """Labels and boxes of the items a viewer can see: mostly-hidden ones are left out."""
    return [
        (item.label, item_box(item, size))
        for item, seen in zip(items, visible_fractions(items, size, occluder), strict=True)
        if seen >= MIN_VISIBLE
    ]
