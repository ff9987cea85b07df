"""Random baskets: items inside the frame, overlap limits, hands that reach in, samples."""

from __future__ import annotations

import numpy as np

from agent.camera.render import render_scene
from agent.camera.scenes import place_item, random_item, random_occluder, random_sample
from agent.camera.shapes import PRODUCTS, Item, item_box
from agent.detect.boxes import box_iou

SIZE = (320, 240)


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
