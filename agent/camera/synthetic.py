"""A synthetic camera looking into a basket being filled.

Products are put in one or two at a time and stay for many frames, some are
taken out again, and now and then a hand passes over. The scene script and the
pixels depend only on the seed, so the same seed gives the same frames; the
source is endless. ``truth`` tells tests and benchmarks what the last frame
shows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from agent.camera.frame import Frame
from agent.camera.render import render_scene, visible_truth
from agent.camera.scenes import place_item, random_occluder
from agent.camera.shapes import Item, Occluder
from agent.detect.boxes import Box
from agent.errors import CameraInputError

MAX_ITEMS = 6
HOLD_FRAMES = (40, 121)  # frames between scene changes: [low, high)
FIRST_CHANGE = (10, 30)  # an empty basket is shown this long before the first product
HAND_FRAMES = (4, 12)  # how long a hand pass lasts: [low, high)
HAND_P = 0.2
TWO_AT_ONCE_P = 0.3
MIN_SIDE = 32


@dataclass(frozen=True)
class HandPass:
    occluder: Occluder  # at full reach
    start: int  # frame index the pass began
    frames: int

    def at(self, index: int) -> Occluder | None:
        step = index - self.start
        if not 0 <= step < self.frames:
            return None
        # In and out again: reach follows half a sine over the pass.
        share = math.sin(math.pi * (step + 1) / (self.frames + 1))
        return replace(self.occluder, reach=self.occluder.reach * (0.3 + 0.7 * share))


class BasketScript:
    """What is in the basket at each frame: a seeded sequence of puts, removals and hand passes."""

    def __init__(self, rng: np.random.Generator, size: tuple[int, int]) -> None:
        self._rng = rng
        self._size = size
        self.items: list[Item] = []
        self.hand: HandPass | None = None
        self._next_change = int(rng.integers(*FIRST_CHANGE))

    def step(self, index: int) -> tuple[list[Item], Occluder | None]:
        """Advance to frame ``index`` (called once per frame, in order)."""
        if index >= self._next_change:
            self._change(index)
        occluder = self.hand.at(index) if self.hand is not None else None
        if occluder is None:
            self.hand = None
        return list(self.items), occluder

    def _change(self, index: int) -> None:
        rng = self._rng
        n = len(self.items)
        roll = rng.random()
        if n and roll < HAND_P:
            frames = int(rng.integers(*HAND_FRAMES))
            self.hand = HandPass(
                random_occluder(rng, reach=float(rng.uniform(0.5, 0.9))), index, frames
            )
        elif n >= MAX_ITEMS or (n and rng.random() < 0.45 * n / MAX_ITEMS):
            del self.items[int(rng.integers(n))]
        else:
            for _ in range(2 if rng.random() < TWO_AT_ONCE_P else 1):
                if len(self.items) < MAX_ITEMS:
                    item = place_item(rng, self.items, self._size)
                    if item is not None:
                        self.items.append(item)
        self._next_change = index + int(rng.integers(*HOLD_FRAMES))


class SyntheticSource:
    """An endless, deterministic frame source; ``truth`` is what the last frame shows."""

    live = False

    def __init__(
        self,
        seed: int = 0,
        size: tuple[int, int] = (320, 240),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if seed < 0:
            raise CameraInputError(
                f"synthetic seed {seed} is negative", fix="use synthetic:N with N >= 0"
            )
        if min(size) < MIN_SIDE:
            raise CameraInputError(
                f"synthetic frame size {size[0]}x{size[1]} is too small",
                fix=f"use at least {MIN_SIDE}x{MIN_SIDE}",
            )
        self.name = f"synthetic:{seed}"
        self._seed = seed
        self._size = (int(size[0]), int(size[1]))
        self._clock = clock
        self._script = BasketScript(np.random.default_rng(seed), self._size)
        self._index = 0
        self._closed = False
        self._truth: list[tuple[str, Box]] = []
        self._occluded = False

    @property
    def truth(self) -> list[tuple[str, Box]]:
        """Labels and (ymin, xmin, ymax, xmax) boxes of the products visible in the last frame."""
        return list(self._truth)

    @property
    def occluded(self) -> bool:
        """Whether a hand was in the last frame."""
        return self._occluded

    def read(self) -> Frame | None:
        if self._closed:
            return None
        index = self._index
        items, occluder = self._script.step(index)
        # Pixels depend on (seed, index) alone, not on how many frames were drawn before.
        image = render_scene(
            np.random.default_rng((self._seed, index)), items, self._size, occluder
        )
        self._truth = visible_truth(items, self._size, occluder)
        self._occluded = occluder is not None
        self._index += 1
        return Frame(image=image, t_mono=self._clock(), index=index)

    def close(self) -> None:
        self._closed = True
