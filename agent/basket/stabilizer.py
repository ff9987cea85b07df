"""Per-product count hysteresis: flickering detections in, a stable confirmed count out.

For every key (a product) the stabilizer sees, each frame, the scores of that
product's detections; their number is the frame's count. The confirmed count

- rises to X when every one of the last ``confirm_frames`` counts was at least
  X (X > confirmed): X is the minimum count over that window;
- falls to Y when every one of the last ``release_frames`` counts was at most
  Y (Y < confirmed): Y is the maximum count over that longer window.

A hand passing over the basket lowers the count for a few frames: shorter than
``release_frames``, it changes nothing, so there is no remove and no re-add.
The two rules can never both fire (release_frames >= confirm_frames, so the
rise window lies inside the fall window).

A rise carries a confidence: the mean, over the confirm window, of the scores
that made the rise. With the frame's scores sorted high to low, those are the
ones ranked old+1 .. new (the weakest of the top ``new``), so a second,
doubtful apple beside a clear one is judged on its own score.

Sliding minima and maxima use monotonic deques: O(1) amortised per frame and
key, however long the windows.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Change:
    """The confirmed count of ``key`` moved from ``old`` to ``new``."""

    key: str
    old: int
    new: int
    confidence: float = 0.0  # for rises only; 0.0 for falls

    @property
    def rise(self) -> bool:
        return self.new > self.old


class _Track:
    """One key's confirmed count and recent history."""

    __slots__ = ("_highs", "_lows", "_scores", "confirmed", "seen")

    def __init__(self, confirmed: int, confirm_frames: int) -> None:
        self.confirmed = confirmed
        self.seen = 0
        # (frame, count) pairs: counts increasing in _lows (front = window minimum),
        # decreasing in _highs (front = window maximum).
        self._lows: deque[tuple[int, int]] = deque()
        self._highs: deque[tuple[int, int]] = deque()
        self._scores: deque[tuple[float, ...]] = deque(maxlen=confirm_frames)

    def push(self, frame: int, scores: tuple[float, ...], confirm: int, release: int) -> None:
        count = len(scores)
        self.seen += 1
        self._scores.append(scores)
        while self._lows and self._lows[-1][1] >= count:
            self._lows.pop()
        self._lows.append((frame, count))
        while self._lows[0][0] <= frame - confirm:
            self._lows.popleft()
        while self._highs and self._highs[-1][1] <= count:
            self._highs.pop()
        self._highs.append((frame, count))
        while self._highs[0][0] <= frame - release:
            self._highs.popleft()

    def low(self) -> int:
        """Smallest count of the last confirm_frames frames."""
        return self._lows[0][1]

    def high(self) -> int:
        """Largest count of the last release_frames frames."""
        return self._highs[0][1]

    def confidence(self, old: int, new: int) -> float:
        values = [score for frame in self._scores for score in frame[old:new]]
        return math.fsum(values) / len(values)


class CountStabilizer:
    """Confirmed counts per key, changed only by counts that held (see module doc)."""

    def __init__(self, confirm_frames: int, release_frames: int,
                 initial: Mapping[str, int] | None = None) -> None:
        if confirm_frames < 1 or release_frames < confirm_frames:
            raise ValueError("need 1 <= confirm_frames <= release_frames")
        self.confirm_frames = confirm_frames
        self.release_frames = release_frames
        self._frame = 0
        self._tracks: dict[str, _Track] = {}
        for key, count in (initial or {}).items():
            if count > 0:
                self._tracks[key] = _Track(int(count), confirm_frames)

    @property
    def confirmed(self) -> dict[str, int]:
        return {key: track.confirmed for key, track in sorted(self._tracks.items())
                if track.confirmed > 0}

    def update(self, observed: Mapping[str, Sequence[float]]) -> list[Change]:
        """One frame: each key's detection scores (absent key = none seen). Changes, by key."""
        self._frame += 1
        changes = []
        for key in sorted(set(self._tracks) | set(observed)):
            scores = tuple(sorted(observed.get(key, ()), reverse=True))
            track = self._tracks.get(key)
            if track is None:
                if not scores:
                    continue
                track = self._tracks[key] = _Track(0, self.confirm_frames)
            track.push(self._frame, scores, self.confirm_frames, self.release_frames)
            change = self._settle(key, track)
            if change is not None:
                changes.append(change)
            if track.confirmed == 0 and not scores:
                # Nothing confirmed, nothing seen: the key's history can no longer matter
                # (any window holding this frame has a zero count), so forget it.
                del self._tracks[key]
        return changes

    def _settle(self, key: str, track: _Track) -> Change | None:
        old = track.confirmed
        if track.seen >= self.confirm_frames and track.low() > old:
            new = track.low()
            track.confirmed = new
            return Change(key, old, new, track.confidence(old, new))
        if track.seen >= self.release_frames and track.high() < old:
            track.confirmed = track.high()
            return Change(key, old, track.confirmed)
        return None
