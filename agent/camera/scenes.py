"""Random baskets: products placed without much overlap, a hand now and then, training samples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agent.camera.render import render_scene, visible_truth
from agent.camera.shapes import (
    PRODUCTS,
    SKIN_TONES,
    SLEEVE_COLOURS,
    Item,
    Occluder,
    item_box,
)
from agent.detect.boxes import box_iou

# Item size as a fraction of the frame's shorter side: (low, high).
_SCALE = {
    "apple": (0.20, 0.28),
    "banana": (0.36, 0.48),
    "milk": (0.40, 0.52),
    "bread": (0.38, 0.50),
    "cereal": (0.42, 0.54),
    "soda": (0.34, 0.44),
}


@dataclass(frozen=True)
class Sample:
    """A training sample: the image and what is visibly in it."""

    image: np.ndarray  # HxWx3 uint8 RGB
    boxes: np.ndarray  # [N, 4] float32 ymin, xmin, ymax, xmax, normalised
    class_ids: np.ndarray  # [N] int32


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
        int(rng.integers(len(SKIN_TONES))),
        int(rng.integers(len(SLEEVE_COLOURS))),
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
