"""The append fast path (no expiry check due, room left) writes what the general path writes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from journal_support import Clock, event, open_journal, pending_ids, segments

from agent.config import JournalConfig
from agent.delivery.journal import Journal
from agent.errors import JournalError

SEGMENT = 4096  # a few records per segment: rolls and compaction happen on the way


class _Stepping:
    """A monotonic clock that moves ``step`` seconds on every reading."""

    def __init__(self, step: float) -> None:
        self.now = 100.0
        self.step = step
        self.readings: list[float] = []

    def __call__(self) -> float:
        self.now += self.step
        self.readings.append(self.now)
        return self.now


def _history(state: Path, step: float) -> tuple[Journal, list[bytes]]:
    wall, clock = Clock(), _Stepping(step)
    journal = open_journal(state, JournalConfig(max_events=1000), wall_clock=wall,
                           clock=clock, segment_bytes=SEGMENT)
    for n in range(60):
        # Both routes, unsynchronised clocks (every 5th), non-ASCII names, odd floats.
        journal.append(replace(event(n, "pending" if n % 3 == 0 else "basket"),
                               confidence=1 / (n + 3), name=f"caf\u00e9 \"{n}\" \U0001f34e"))
        if step < 1.0:  # expiry checked by the first append, never since: the fast path
            assert journal._expiry_checked == clock.readings[1]  # [0]: the open's
        else:  # checked by every append: the general path
            assert journal._expiry_checked == clock.readings[-1]
        wall.now += 0.25
        if n % 4 == 1:
            journal.ack(event(n - 1).event_id)
    return journal, [path.read_bytes() for path in segments(state)]


def test_fast_and_general_appends_write_identical_bytes_and_state(tmp_path: Path) -> None:
    # 1 ms per clock reading: an expiry check falls due once, then every append takes
    # the fast path. 2 s per reading: every append checks expiry (nothing is old enough)
    # and takes the general path.
    fast, fast_bytes = _history(tmp_path / "fast", 0.001)
    general, general_bytes = _history(tmp_path / "general", 2.0)
    assert len(fast_bytes) > 3  # segments rolled and compacted along the way
    assert fast_bytes == general_bytes
    assert fast.pending(limit=1000) == general.pending(limit=1000)
    assert fast._index.live == general._index.live
    assert fast._index.counters == general._index.counters
    fast_stats, general_stats = fast.stats(), general.stats()
    assert replace(fast_stats, oldest_age_s=None) == replace(general_stats, oldest_age_s=None)
    held = pending_ids(fast)
    assert len(held) == 45
    fast.close()
    general.close()
    # And what a restart rebuilds from the fast path's files is what it held.
    again = open_journal(tmp_path / "fast", JournalConfig(max_events=1000))
    assert pending_ids(again) == held
    again.close()


def test_the_fast_path_stops_at_the_limit(tmp_path: Path) -> None:
    journal = open_journal(tmp_path, JournalConfig(max_events=3))
    for n in range(5):
        journal.append(event(n))
    assert pending_ids(journal) == [event(n).event_id for n in (2, 3, 4)]
    assert [d.reason for d in journal.dead_letters()] == ["overflow", "overflow"]
    assert journal.stats().overflowed == 2
    journal.close()


def test_an_absurd_event_on_the_fast_path_is_refused_cleanly(tmp_path: Path) -> None:
    clock = Clock()  # never moves: after the first append no expiry check is due
    journal = open_journal(tmp_path, wall_clock=clock, clock=clock)
    journal.append(event(0))
    for absurd in (replace(event(1), name="x" * (2 << 20)),
                   replace(event(1), event_id="\u00e9" * 0x8000)):
        with pytest.raises(JournalError, match="cannot be written"):
            journal.append(absurd)
    journal.append(event(2))
    assert pending_ids(journal) == [event(0).event_id, event(2).event_id]
    journal.close()
