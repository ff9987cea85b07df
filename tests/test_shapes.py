"""Product and hand polygons: labels in class-id order, boxes that follow the polygons."""

from __future__ import annotations

import pytest

from agent.camera.shapes import (
    PRODUCTS,
    SKIN_TONES,
    Item,
    Occluder,
    item_box,
    item_polygons,
    occluder_polygons,
)

SIZE = (320, 240)


def test_products_match_labels_file(repo_root) -> None:
    lines = (repo_root / "models" / "labels.txt").read_text().splitlines()
    assert tuple(lines) == PRODUCTS


@pytest.mark.parametrize("class_id", range(len(PRODUCTS)))
def test_box_bounds_the_polygons_and_grows_with_scale(class_id: int) -> None:
    small, large = Item(class_id, 0.5, 0.5, 0.2, 30.0), Item(class_id, 0.5, 0.5, 0.4, 30.0)
    w, h = SIZE
    ymin, xmin, ymax, xmax = item_box(small, SIZE)
    for points, _ in item_polygons(small, SIZE):
        for x, y in points:
            assert xmin * w - 1e-6 <= x <= xmax * w + 1e-6
            assert ymin * h - 1e-6 <= y <= ymax * h + 1e-6
    big = item_box(large, SIZE)
    assert big[2] - big[0] == pytest.approx(2 * (ymax - ymin), rel=1e-6)
    assert big[3] - big[1] == pytest.approx(2 * (xmax - xmin), rel=1e-6)


def test_box_is_clipped_to_the_frame() -> None:
    # Centred on the bottom-left corner: half of it lies outside.
    ymin, xmin, ymax, xmax = item_box(Item(2, 0.0, 1.0, 0.5, 0.0), SIZE)
    assert xmin == 0.0 and ymax == 1.0 and 0.0 < ymin < 1.0 and 0.0 < xmax < 1.0


def test_brightness_shades_every_colour() -> None:
    plain = item_polygons(Item(0, 0.5, 0.5, 0.3, 0.0), SIZE)
    dim = item_polygons(Item(0, 0.5, 0.5, 0.3, 0.0, brightness=0.5), SIZE)
    for (points, colour), (dim_points, dim_colour) in zip(plain, dim, strict=True):
        assert points == dim_points
        assert all(d == round(c * 0.5) for c, d in zip(colour, dim_colour, strict=True))


def test_hand_starts_outside_and_reaches_in_in_its_skin_tone() -> None:
    hand = Occluder(0.5, 1.05, -90.0, 0.6, skin=5)  # skin wraps round the tones
    polys = occluder_polygons(hand, SIZE)
    assert polys[0][1] == SKIN_TONES[5 % len(SKIN_TONES)]
    ys = [y for points, _ in polys for _, y in points]
    assert max(ys) > SIZE[1] and min(ys) < SIZE[1] * (1.05 - 0.6)
