"""The synthetic camera: deterministic, endless, a basket that fills, empties and gets a hand."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from agent.camera.frame import FrameSource
from agent.camera.shapes import PRODUCTS
from agent.camera.synthetic import SyntheticSource
from agent.errors import CameraInputError

FRAMES = 600


def _run(seed: int, frames: int = FRAMES, size: tuple[int, int] = (160, 120)):
    """Truth and occlusion of every frame."""
    src = SyntheticSource(seed, size)
    out = []
    for _ in range(frames):
        frame = src.read()
        assert frame is not None
        out.append((src.truth, src.occluded))
    return out


def test_is_a_frame_source() -> None:
    src: FrameSource = SyntheticSource(0)
    assert src.name == "synthetic:0"
    assert src.live is False


def test_frames_have_requested_shape_and_type() -> None:
    src = SyntheticSource(1, (200, 150))
    frame = src.read()
    assert frame is not None
    assert frame.image.shape == (150, 200, 3)
    assert frame.image.dtype == np.uint8


def test_same_seed_gives_identical_frames_and_truth() -> None:
    a, b, c = (
        SyntheticSource(4, (160, 120)),
        SyntheticSource(4, (160, 120)),
        SyntheticSource(5, (160, 120)),
    )
    differs = False
    for _ in range(150):
        fa, fb, fc = a.read(), b.read(), c.read()
        assert fa is not None and fb is not None and fc is not None
        assert np.array_equal(fa.image, fb.image)
        assert a.truth == b.truth
        differs = differs or not np.array_equal(fa.image, fc.image)
    assert differs


def test_index_and_time_come_from_the_injected_clock() -> None:
    ticks = itertools.count(100.0, 0.5)
    src = SyntheticSource(0, (64, 48), clock=lambda: next(ticks))
    frames = [src.read() for _ in range(3)]
    assert [f.index for f in frames if f] == [0, 1, 2]
    assert [f.t_mono for f in frames if f] == [100.0, 100.5, 101.0]


def test_closed_source_yields_nothing() -> None:
    src = SyntheticSource(0, (64, 48))
    assert src.read() is not None
    src.close()
    assert src.read() is None


@pytest.mark.parametrize(("seed", "size"), [(-1, (320, 240)), (0, (16, 240)), (0, (320, 8))])
def test_bad_seed_or_size_is_bad_input(seed: int, size: tuple[int, int]) -> None:
    with pytest.raises(CameraInputError) as err:
        SyntheticSource(seed, size)
    assert err.value.exit_code == 2 and err.value.fix


def test_truth_boxes_lie_inside_the_frame() -> None:
    for truth, _ in _run(2):
        for label, (ymin, xmin, ymax, xmax) in truth:
            assert label in PRODUCTS
            assert 0.0 <= ymin < ymax <= 1.0
            assert 0.0 <= xmin < xmax <= 1.0


def test_products_are_added_kept_removed_and_occluded() -> None:
    adds = removals = hands = 0
    holds: list[int] = []
    for seed in range(3):
        frames = _run(seed)
        assert frames[0][0] == []  # the basket starts empty
        run = 1
        for (before, hand_before), (after, occluded) in itertools.pairwise(frames):
            hands += occluded
            # A hand hides products for a moment; count only changes between clear frames.
            clear = not (hand_before or occluded)
            n_before, n_after = len(before), len(after)
            if clear and n_after > n_before:
                adds += 1
                assert n_after - n_before <= 2  # one or two products at a time
                assert before == after[:n_before]  # what was there stays where it was
            if clear and n_after < n_before:
                removals += 1
            if before == after:
                run += 1
            else:
                holds.append(run)
                run = 1
    assert adds >= 6 and removals >= 2 and hands >= 3
    # Products stay put for many frames between changes.
    assert np.median(holds) >= 40


def test_hand_pass_is_brief_and_drawn() -> None:
    src = SyntheticSource(3, (160, 120))
    passes: list[int] = []
    length = 0
    hand_pixels_seen = False
    for _ in range(FRAMES):
        frame = src.read()
        assert frame is not None
        if src.occluded:
            length += 1
            r, g, b = (frame.image[..., k].astype(int) for k in range(3))
            # Skin: red above green above blue by a margin, on more than a sliver of the frame.
            hand_pixels_seen = hand_pixels_seen or ((r > g + 15) & (g > b + 10)).mean() > 0.03
        elif length:
            passes.append(length)
            length = 0
    assert passes and all(3 <= n <= 12 for n in passes)
    assert hand_pixels_seen
