"""Drawing scenes: deterministic pixels, boxes that fit what is drawn, visible truth."""

from __future__ import annotations

import numpy as np
import pytest

from agent.camera.render import render_scene, visible_fractions, visible_truth
from agent.camera.scenes import random_item
from agent.camera.shapes import PRODUCTS, Item, Occluder, item_box

SIZE = (320, 240)


def test_same_generator_state_gives_same_pixels() -> None:
    items = [random_item(np.random.default_rng(3), SIZE, c) for c in range(len(PRODUCTS))]
    a = render_scene(np.random.default_rng(9), items, SIZE)
    b = render_scene(np.random.default_rng(9), items, SIZE)
    c = render_scene(np.random.default_rng(10), items, SIZE)
    assert a.shape == (240, 320, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("size", [(320, 240), (160, 160), (300, 300), (64, 48)])
def test_frame_shape_follows_size(size: tuple[int, int]) -> None:
    image = render_scene(np.random.default_rng(0), [], size)
    assert image.shape == (size[1], size[0], 3)
    assert image.dtype == np.uint8


@pytest.mark.parametrize("class_id", range(len(PRODUCTS)))
def test_box_encloses_the_drawn_product(class_id: int) -> None:
    """Pixels that differ from the empty basket lie inside the item's box (plus its shadow)."""
    rng = np.random.default_rng(class_id)
    item = random_item(rng, SIZE, class_id)
    empty = render_scene(np.random.default_rng(1), [], SIZE).astype(int)
    drawn = render_scene(np.random.default_rng(1), [item], SIZE).astype(int)
    changed = np.abs(drawn - empty).sum(axis=2) > 0
    ys, xs = np.nonzero(changed)
    ymin, xmin, ymax, xmax = item_box(item, SIZE)
    w, h = SIZE
    slack = 5  # the drop shadow and antialiasing
    assert xs.min() >= xmin * w - slack and xs.max() <= xmax * w + slack
    assert ys.min() >= ymin * h - slack and ys.max() <= ymax * h + slack
    # ... and the product fills a fair part of its box.
    box_px = (xmax - xmin) * w * (ymax - ymin) * h
    assert changed.sum() > 0.3 * box_px


def test_products_have_distinct_colours() -> None:
    """Each product, drawn alone at the centre, has a different mean colour."""
    means = []
    for cid in range(len(PRODUCTS)):
        item = Item(cid, 0.5, 0.5, 0.4, 0.0)
        empty = render_scene(np.random.default_rng(1), [], SIZE)
        drawn = render_scene(np.random.default_rng(1), [item], SIZE)
        mask = np.abs(drawn.astype(int) - empty.astype(int)).sum(axis=2) > 20
        means.append(drawn[mask].mean(axis=0))
    for i in range(len(means)):
        for j in range(i + 1, len(means)):
            assert np.abs(means[i] - means[j]).sum() > 30, (PRODUCTS[i], PRODUCTS[j])


def test_hand_hides_products_from_the_truth() -> None:
    apple = Item(0, 0.5, 0.5, 0.25, 0.0)
    far = Item(2, 0.12, 0.3, 0.4, 0.0)
    # An arm coming up from the bottom straight over the apple, reaching past it.
    hand = Occluder(0.5, 1.05, -90.0, 0.9, width=0.3)
    seen = visible_fractions([apple, far], SIZE, hand)
    assert seen[0] < 0.5 and seen[1] == pytest.approx(1.0)
    assert [label for label, _ in visible_truth([apple, far], SIZE, hand)] == ["milk"]
    assert [label for label, _ in visible_truth([apple, far], SIZE, None)] == ["apple", "milk"]


def test_hand_is_drawn_in_skin_colour() -> None:
    hand = Occluder(0.5, 1.05, -90.0, 0.7, width=0.2, skin=1)
    with_hand = render_scene(np.random.default_rng(4), [], SIZE, hand).astype(int)
    without = render_scene(np.random.default_rng(4), [], SIZE).astype(int)
    changed = np.abs(with_hand - without).sum(axis=2) > 30
    assert changed.mean() > 0.05
    r, g, b = with_hand[changed].mean(axis=0)
    assert r > g > b  # skin and sleeve together still read warm
