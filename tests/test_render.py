"""The product renderer: deterministic pixels, boxes that fit what is drawn, visible truth."""

from __future__ import annotations

import numpy as np
import pytest

from agent.camera.render import (
    PRODUCTS,
    Item,
    Occluder,
    box_iou,
    item_box,
    place_item,
    random_item,
    random_occluder,
    random_sample,
    render_scene,
    visible_fractions,
    visible_truth,
)

SIZE = (320, 240)


def test_products_match_labels_file(repo_root) -> None:
    lines = (repo_root / "models" / "labels.txt").read_text().splitlines()
    assert tuple(lines) == PRODUCTS


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


def test_random_items_lie_inside_the_frame() -> None:
    rng = np.random.default_rng(5)
    for _ in range(300):
        item = random_item(rng, SIZE)
        ymin, xmin, ymax, xmax = item_box(item, SIZE)
        assert 0.0 < ymin < ymax < 1.0
        assert 0.0 < xmin < xmax < 1.0


def test_placement_respects_overlap_limit_and_reports_no_room() -> None:
    rng = np.random.default_rng(2)
    items: list[Item] = []
    for _ in range(6):
        item = place_item(rng, items, SIZE, max_iou=0.1)
        if item is not None:
            items.append(item)
    boxes = [item_box(i, SIZE) for i in items]
    assert len(items) >= 3
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert box_iou(boxes[i], boxes[j]) <= 0.1
    # A frame filled by one huge box has no room for another non-overlapping product.
    giant = Item(4, 0.5, 0.5, 3.0, 0.0)
    assert place_item(rng, [giant], SIZE, max_iou=0.0, tries=10) is None


def test_box_iou() -> None:
    assert box_iou((0, 0, 1, 1), (0, 0, 1, 1)) == pytest.approx(1.0)
    assert box_iou((0, 0, 0.5, 0.5), (0.5, 0.5, 1, 1)) == 0.0
    assert box_iou((0, 0, 0.5, 1), (0, 0, 1, 1)) == pytest.approx(0.5)
    assert box_iou((0.2, 0.2, 0.2, 0.2), (0.2, 0.2, 0.2, 0.2)) == 0.0


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


def test_random_occluder_points_into_the_frame() -> None:
    rng = np.random.default_rng(8)
    for _ in range(50):
        occ = random_occluder(rng)
        image = render_scene(np.random.default_rng(0), [], SIZE, occ)
        plain = render_scene(np.random.default_rng(0), [], SIZE)
        assert (np.abs(image.astype(int) - plain.astype(int)).sum(axis=2) > 30).mean() > 0.02


def test_random_sample_boxes_and_ids_agree() -> None:
    rng = np.random.default_rng(11)
    counts = []
    for _ in range(50):
        sample = random_sample(rng, SIZE, max_items=6, occluder_p=0.3)
        assert sample.image.shape == (240, 320, 3)
        assert sample.boxes.dtype == np.float32 and sample.boxes.shape[1] == 4
        assert sample.class_ids.shape == (len(sample.boxes),)
        assert np.all((sample.class_ids >= 0) & (sample.class_ids < len(PRODUCTS)))
        assert np.all(sample.boxes[:, :2] < sample.boxes[:, 2:])
        assert np.all((sample.boxes >= 0) & (sample.boxes <= 1))
        counts.append(len(sample.boxes))
    assert min(counts) == 0 and max(counts) >= 4
