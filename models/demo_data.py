"""The demo model's data: rendered baskets at the model's input size, from disjoint seed ranges.

Numpy and Pillow only, so evaluation and tests use the very samples training
would, without TensorFlow. Sample ``i`` of a split is rendered from the
generator seeded with ``(split, i)``; splits never share a seed.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from agent.camera.scenes import Sample, random_sample

INPUT_SIZE = (160, 160)  # (width, height) of the demo model's input
# Frames come both at the model size (the agent asks the synthetic source for it) and at a
# 4:3 camera size that the detector stretches to the input, as it does for real cameras.
RENDER_SIZES = ((160, 160), (320, 240))

TRAIN = 1
CALIBRATION = 2
HELD_OUT = 3
VALIDATION = 4  # for choosing export settings, never for the reported accuracy


def sample(split: int, i: int, occluder_p: float = 0.2) -> Sample:
    """Sample ``i`` of ``split``: a 160x160 image, its visible boxes and class ids."""
    rng = np.random.default_rng((split, i))
    size = RENDER_SIZES[int(rng.integers(len(RENDER_SIZES)))]
    s = random_sample(rng, size, max_items=6, occluder_p=occluder_p)
    if size == INPUT_SIZE:
        return s
    # The detector stretches frames with Pillow's bilinear filter (agent.detect.preprocess).
    image = np.asarray(Image.fromarray(s.image).resize(INPUT_SIZE, Image.BILINEAR))
    return Sample(image, s.boxes, s.class_ids)
