"""A small deterministic renderer of grocery products in a basket.

It feeds the synthetic camera (demo, tests, benchmarks) and the training data
of the bundled demo model, so both see the same products. Everything is drawn
with Pillow polygons on a cached textured background; randomness comes only
from the ``numpy.random.Generator`` passed in, so the same generator state
gives the same pixels.

Boxes are (ymin, xmin, ymax, xmax) normalised to [0, 1], the order of TFLite's
SSD post-processing and of ``agent.detect.types.Detection``.

A 320x240 frame with six products and a hand takes about 0.7 ms on one x86 core
(the polygons of a product are cached while it stays put).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageDraw

# Line i is class id i in models/labels.txt.
PRODUCTS: tuple[str, ...] = ("apple", "banana", "milk", "bread", "cereal", "soda")

Box = tuple[float, float, float, float]
Colour = tuple[int, int, int]
Point = tuple[float, float]
Polygon = tuple[tuple[Point, ...], Colour]

# Item size as a fraction of the frame's shorter side: (low, high).
_SCALE = {
    "apple": (0.20, 0.28),
    "banana": (0.36, 0.48),
    "milk": (0.40, 0.52),
    "bread": (0.38, 0.50),
    "cereal": (0.42, 0.54),
    "soda": (0.34, 0.44),
}
_SKIN: tuple[Colour, ...] = ((236, 188, 150), (224, 172, 105), (198, 134, 66), (141, 85, 36))
_SLEEVES: tuple[Colour, ...] = ((40, 60, 120), (120, 30, 40), (60, 60, 60), (30, 110, 70))
_BACKGROUNDS = 4
_NOISE_AMPLITUDE = 10
# Below this visible fraction an item hidden by the hand is not in the truth.
MIN_VISIBLE = 0.5


@dataclass(frozen=True)
class Item:
    """One product lying in the basket: where, how big, turned how far, how lit."""

    class_id: int
    cx: float  # centre, normalised to the frame width
    cy: float  # centre, normalised to the frame height
    scale: float  # fraction of the frame's shorter side
    angle: float  # degrees
    brightness: float = 1.0

    @property
    def label(self) -> str:
        return PRODUCTS[self.class_id]


@dataclass(frozen=True)
class Occluder:
    """A hand on an arm reaching in from outside the frame.

    (x0, y0) is where the arm enters (normalised, may lie outside [0, 1]),
    ``angle`` the direction it points (degrees, 0 = right, 90 = down), ``reach``
    how far the hand gets, as a fraction of the frame's shorter side.
    """

    x0: float
    y0: float
    angle: float
    reach: float
    width: float = 0.16  # arm width, fraction of the shorter side
    skin: int = 0
    sleeve: int = 0


@dataclass(frozen=True)
class Sample:
    """A training sample: the image and what is visibly in it."""

    image: np.ndarray  # HxWx3 uint8 RGB
    boxes: np.ndarray  # [N, 4] float32 ymin, xmin, ymax, xmax, normalised
    class_ids: np.ndarray  # [N] int32


# --- geometry -------------------------------------------------------------------------


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 18) -> list[Point]:
    return [
        (cx + rx * math.cos(2 * math.pi * k / n), cy + ry * math.sin(2 * math.pi * k / n))
        for k in range(n)
    ]


def _rect(x0: float, y0: float, x1: float, y1: float) -> list[Point]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _shade(colour: Colour, factor: float) -> Colour:
    return tuple(max(0, min(255, round(c * factor))) for c in colour)  # type: ignore[return-value]


def _apple() -> list[tuple[list[Point], Colour]]:
    body = []
    for k in range(24):
        t = 2 * math.pi * k / 24
        dimple = 0.10 * max(0.0, -math.sin(t)) ** 12  # a notch at the top, where the stem is
        r = 0.5 * (1.0 - dimple)
        body.append((r * math.cos(t) * 1.04, r * math.sin(t)))
    return [
        (body, (196, 30, 36)),
        (_ellipse(-0.17, -0.16, 0.10, 0.07, 10), (236, 120, 110)),
        (_rect(-0.025, -0.58, 0.025, -0.38), (95, 60, 25)),
        (_ellipse(0.12, -0.50, 0.12, 0.05, 10), (60, 150, 50)),
    ]


def _banana() -> list[tuple[list[Point], Colour]]:
    outer, inner = [], []
    for k in range(15):
        t = math.radians(-62 + 124 * k / 14)
        thick = 0.05 + 0.15 * math.cos(t * 1.35)
        r_out, r_in = 0.62, 0.62 - thick
        outer.append((r_out * math.sin(t), 0.48 - r_out * math.cos(t)))
        inner.append((r_in * math.sin(t), 0.48 - r_in * math.cos(t)))
    body = outer + inner[::-1]
    tip_l = [outer[0], inner[0], (outer[0][0] - 0.04, outer[0][1] + 0.06)]
    tip_r = [outer[-1], inner[-1], (outer[-1][0] + 0.05, outer[-1][1] + 0.02)]
    ridge = [outer[k] for k in range(3, 12)] + [
        ((outer[k][0] * 3 + inner[k][0]) / 4, (outer[k][1] * 3 + inner[k][1]) / 4)
        for k in range(11, 2, -1)
    ]
    return [
        (body, (236, 204, 48)),
        (ridge, (214, 180, 36)),
        (tip_l, (90, 70, 30)),
        (tip_r, (70, 55, 25)),
    ]


def _milk() -> list[tuple[list[Point], Colour]]:
    return [
        (_rect(-0.19, -0.30, 0.19, 0.50), (242, 242, 236)),
        ([(-0.19, -0.30), (0.0, -0.48), (0.19, -0.30)], (214, 216, 212)),
        (_rect(-0.19, -0.05, 0.19, 0.20), (40, 90, 200)),
        (_ellipse(0.07, -0.38, 0.045, 0.03, 8), (30, 60, 160)),
        (_rect(-0.13, 0.27, 0.13, 0.40), (120, 170, 230)),
    ]


def _bread() -> list[tuple[list[Point], Colour]]:
    loaf = []
    for k in range(28):
        t = 2 * math.pi * k / 28
        c, s = math.cos(t), math.sin(t)
        # A superellipse: a loaf with rounded corners.
        loaf.append(
            (0.48 * math.copysign(abs(c) ** 0.5, c), 0.23 * math.copysign(abs(s) ** 0.5, s))
        )
    scores = [
        [(x - 0.04, -0.17), (x + 0.02, -0.17), (x + 0.10, 0.17), (x + 0.04, 0.17)]
        for x in (-0.30, -0.10, 0.10)
    ]
    return [(loaf, (196, 136, 64)), (_rect(-0.40, -0.10, 0.40, 0.10), (164, 104, 44))] + [
        (s, (232, 196, 130)) for s in scores
    ]


def _cereal() -> list[tuple[list[Point], Colour]]:
    return [
        (_rect(-0.28, -0.40, 0.28, 0.40), (236, 112, 20)),
        (_rect(-0.28, -0.40, 0.28, -0.32), (170, 60, 10)),
        (_rect(-0.20, -0.26, 0.20, -0.08), (250, 226, 70)),
        (_ellipse(0.0, 0.14, 0.17, 0.12, 14), (250, 250, 245)),
        (_ellipse(0.0, 0.11, 0.12, 0.06, 10), (210, 160, 60)),
    ]


def _soda() -> list[tuple[list[Point], Colour]]:
    top, bottom = _ellipse(0.0, -0.24, 0.15, 0.05, 12), _ellipse(0.0, 0.24, 0.15, 0.05, 12)
    return [
        (_rect(-0.15, -0.24, 0.15, 0.24), (176, 182, 190)),
        (bottom, (150, 156, 164)),
        (_rect(-0.15, -0.12, 0.15, 0.14), (20, 140, 170)),
        (_rect(-0.15, -0.02, 0.15, 0.03), (240, 240, 240)),
        (top, (214, 218, 224)),
        (_ellipse(0.04, -0.24, 0.05, 0.02, 8), (120, 124, 130)),
    ]


_SHAPES = (_apple, _banana, _milk, _bread, _cereal, _soda)


@functools.lru_cache(maxsize=len(_SHAPES))
def _local_shape(class_id: int) -> tuple[tuple[np.ndarray, Colour], ...]:
    return tuple((np.asarray(pts, dtype=np.float64), col) for pts, col in _SHAPES[class_id]())


def _transform(pts: np.ndarray, unit: float, angle: float, cx: float, cy: float) -> np.ndarray:
    a = math.radians(angle)
    rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]]) * unit
    return pts @ rot + (cx, cy)


@functools.lru_cache(maxsize=512)
def item_polygons(item: Item, size: tuple[int, int]) -> tuple[Polygon, ...]:
    """The item's polygons in pixels, first the body; colours include its brightness."""
    w, h = size
    unit = item.scale * min(w, h)
    out = []
    for pts, colour in _local_shape(item.class_id):
        xy = _transform(pts, unit, item.angle, item.cx * w, item.cy * h)
        out.append((tuple(map(tuple, xy.tolist())), _shade(colour, item.brightness)))
    return tuple(out)


def _polygons_box(polys: Sequence[Polygon], size: tuple[int, int]) -> Box:
    w, h = size
    pts = np.concatenate([np.asarray(p) for p, _ in polys])
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    return (
        float(np.clip(y0 / h, 0, 1)),
        float(np.clip(x0 / w, 0, 1)),
        float(np.clip(y1 / h, 0, 1)),
        float(np.clip(x1 / w, 0, 1)),
    )


def item_box(item: Item, size: tuple[int, int]) -> Box:
    """The item's bounding box, (ymin, xmin, ymax, xmax) normalised and clipped to the frame."""
    return _polygons_box(item_polygons(item, size), size)


def occluder_polygons(occ: Occluder, size: tuple[int, int]) -> tuple[Polygon, ...]:
    """Sleeve, arm, palm and fingers in pixels."""
    w, h = size
    unit = min(w, h)
    a = math.radians(occ.angle)
    d = np.array([math.cos(a), math.sin(a)])  # along the arm
    n = np.array([-d[1], d[0]])  # across the arm
    start = np.array([occ.x0 * w, occ.y0 * h])
    wrist = start + d * occ.reach * unit
    half = occ.width * unit / 2
    skin = _SKIN[occ.skin % len(_SKIN)]
    sleeve_end = start + d * max(0.0, occ.reach - 0.35) * unit

    def quad(p: np.ndarray, q: np.ndarray, hw: float) -> tuple[Point, ...]:
        return tuple(
            map(tuple, np.array([p + n * hw, q + n * hw, q - n * hw, p - n * hw]).tolist())
        )

    palm_c = wrist + d * half * 0.9
    palm = [
        tuple((palm_c + d * half * 1.1 * math.cos(t) + n * half * 1.15 * math.sin(t)).tolist())
        for t in np.linspace(0, 2 * math.pi, 16, endpoint=False)
    ]
    polys: list[Polygon] = [
        (quad(start - d * unit, wrist, half * 0.85), skin),
        (quad(start - d * unit, sleeve_end, half * 1.05), _SLEEVES[occ.sleeve % len(_SLEEVES)]),
        (tuple(palm), skin),
    ]
    finger_w = half * 0.22
    for k, off in enumerate((-0.66, -0.22, 0.22, 0.66)):
        base = palm_c + d * half * 0.7 + n * half * off
        length = half * (1.1 if k in (1, 2) else 0.9)
        polys.append((quad(base, base + d * length, finger_w), _shade(skin, 0.96)))
    thumb_base = palm_c + n * half * 0.9
    thumb_dir = (d + n) / math.sqrt(2)
    polys.append((quad(thumb_base, thumb_base + thumb_dir * half * 0.9, finger_w * 1.1), skin))
    return tuple(polys)


# --- background ----------------------------------------------------------------------


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


# --- rendering -----------------------------------------------------------------------


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


# --- random scenes -------------------------------------------------------------------


def box_iou(a: Box, b: Box) -> float:
    ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iw = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ih * iw
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _uniform_between(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high)) if low < high else (low + high) / 2


def random_item(
    rng: np.random.Generator, size: tuple[int, int], class_id: int | None = None
) -> Item:
    """A product with random size, turn and light, placed wholly inside the frame."""
    cid = int(rng.integers(len(PRODUCTS))) if class_id is None else class_id
    lo, hi = _SCALE[PRODUCTS[cid]]
    centred = Item(
        cid,
        0.5,
        0.5,
        float(rng.uniform(lo, hi)),
        float(rng.uniform(-180, 180)),
        float(rng.uniform(0.8, 1.15)),
    )
    # Shapes are not all symmetric about their centre: keep each side of the box inside,
    # with a pixel's margin so the box is not clipped at the frame edge.
    ymin, xmin, ymax, xmax = item_box(centred, size)
    mx, my = 1 / size[0], 1 / size[1]
    cx = _uniform_between(rng, 0.5 - xmin + mx, 1.5 - xmax - mx)
    cy = _uniform_between(rng, 0.5 - ymin + my, 1.5 - ymax - my)
    return Item(cid, cx, cy, centred.scale, centred.angle, centred.brightness)


def place_item(
    rng: np.random.Generator,
    existing: Sequence[Item],
    size: tuple[int, int],
    class_id: int | None = None,
    max_iou: float = 0.15,
    tries: int = 30,
) -> Item | None:
    """A random item overlapping none of ``existing`` by more than ``max_iou``; None if no room."""
    boxes = [item_box(i, size) for i in existing]
    for _ in range(tries):
        item = random_item(rng, size, class_id)
        box = item_box(item, size)
        if all(box_iou(box, b) <= max_iou for b in boxes):
            return item
    return None


def random_occluder(rng: np.random.Generator, reach: float | None = None) -> Occluder:
    """An arm entering from the bottom or a side edge, pointing roughly into the frame."""
    edge = int(rng.integers(3))
    if edge == 0:  # bottom
        x0, y0, angle = float(rng.uniform(0.2, 0.8)), 1.05, -90.0
    elif edge == 1:  # right
        x0, y0, angle = 1.05, float(rng.uniform(0.3, 0.9)), 180.0
    else:  # left
        x0, y0, angle = -0.05, float(rng.uniform(0.3, 0.9)), 0.0
    return Occluder(
        x0,
        y0,
        angle + float(rng.uniform(-30, 30)),
        float(rng.uniform(0.35, 0.8)) if reach is None else reach,
        float(rng.uniform(0.13, 0.19)),
        int(rng.integers(len(_SKIN))),
        int(rng.integers(len(_SLEEVES))),
    )


def random_sample(
    rng: np.random.Generator,
    size: tuple[int, int] = (320, 240),
    max_items: int = 6,
    occluder_p: float = 0.2,
) -> Sample:
    """A random basket with 0..max_items products, sometimes a hand: image plus visible truth."""
    items: list[Item] = []
    for _ in range(int(rng.integers(0, max_items + 1))):
        item = place_item(rng, items, size)
        if item is not None:
            items.append(item)
    occluder = random_occluder(rng) if rng.random() < occluder_p else None
    image = render_scene(rng, items, size, occluder)
    truth = visible_truth(items, size, occluder)
    boxes = np.array([b for _, b in truth], dtype=np.float32).reshape(-1, 4)
    ids = np.array([PRODUCTS.index(label) for label, _ in truth], dtype=np.int32)
    return Sample(image, boxes, ids)
