"""The products and the hand, as polygons: their outlines, placed and lit, and their boxes.

Boxes are (ymin, xmin, ymax, xmax) normalised to [0, 1], the order of TFLite's
SSD post-processing and of ``agent.detect.types.Detection``. The polygons of a
product are cached while it stays put.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agent.detect.boxes import Box

# Line i is class id i in models/labels.txt.
PRODUCTS: tuple[str, ...] = ("apple", "banana", "milk", "bread", "cereal", "soda")

Colour = tuple[int, int, int]
Point = tuple[float, float]
Polygon = tuple[tuple[Point, ...], Colour]

SKIN_TONES: tuple[Colour, ...] = ((236, 188, 150), (224, 172, 105), (198, 134, 66), (141, 85, 36))
SLEEVE_COLOURS: tuple[Colour, ...] = ((40, 60, 120), (120, 30, 40), (60, 60, 60), (30, 110, 70))


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
    skin = SKIN_TONES[occ.skin % len(SKIN_TONES)]
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
        (quad(start - d * unit, sleeve_end, half * 1.05), SLEEVE_COLOURS[occ.sleeve % len(SLEEVE_COLOURS)]),
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
