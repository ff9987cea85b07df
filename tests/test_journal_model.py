"""The journal against a plain in-memory model, driven by hypothesis through random histories.

Appends, acks, dead letters, requeues, time passing and the wall clock jumping
as NTP sets it (expiry, measured as the module doc says), a full or
failing disk refusing an append or an ack, both full policies with tiny
bounds, and reopening (a restart) at any point: after every step the journal
must hold exactly what the model holds, in the same order.
"""

from __future__ import annotations

import errno
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from journal_support import Clock, FlakyOps, event, open_journal

from agent.config import JournalConfig
from agent.errors import JournalError

MAX_AGE = 100.0
Pending = tuple[str, str, float, float | None, bool]


class JournalModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="journal-model-"))
        self.clock = Clock()  # the wall clock
        self.mono = Clock(1000.0)
        self.opened = self.mono.now
        self.n = 0
        # (id, route, appended_at, monotonic time written or None if read at open, synced),
        # oldest first
        self.pending: list[Pending] = []
        self.dead: list[str] = []
        self.route_of: dict[str, str] = {}
        self.counts = {"overflowed": 0, "expired": 0, "dead_dropped": 0}
        self.journal = None

    @initialize(max_events=st.integers(1, 6), max_dead=st.integers(1, 4),
                policy=st.sampled_from(["drop_oldest", "reject_new"]),
                segment_bytes=st.sampled_from([900, 4096, 1 << 20]))
    def start(self, max_events: int, max_dead: int, policy: str, segment_bytes: int) -> None:
        self.config = JournalConfig(max_events=max_events, max_age_s=MAX_AGE,
                                    full_policy=policy, max_dead_letters=max_dead)
        self.segment_bytes = segment_bytes
        self._open()

    def _open(self) -> None:
        self.ops = FlakyOps()
        self.journal = open_journal(self.dir, self.config, wall_clock=self.clock, clock=self.mono,
                                    segment_bytes=self.segment_bytes, ops=self.ops)
        self.opened = self.mono.now
        self.pending = [(i, route, at, None, synced) for i, route, at, _, synced in self.pending]

    # -- the model's rules ----------------------------------------------------------------

    def _to_dead(self, event_ids: list[str], reason: str | None) -> None:
        for event_id in event_ids:
            self.dead.append(event_id)
            if reason:
                self.counts[reason] += 1
        while len(self.dead) > self.config.max_dead_letters:
            self.dead.pop(0)
            self.counts["dead_dropped"] += 1

    def _age(self, entry: Pending) -> float:
        _, _, at, written, synced = entry
        if written is not None:
            return self.mono.now - written
        since_open = self.mono.now - self.opened
        return max(since_open, self.clock.now - at) if synced else since_open

    def _expire(self) -> None:
        expired = [p[0] for p in self.pending if self._age(p) >= MAX_AGE]
        self.pending = [p for p in self.pending if p[0] not in expired]
        self._to_dead(expired, "expired")

    # -- rules ---------------------------------------------------------------------------

    @rule(route=st.sampled_from(["basket", "pending"]))
    def append(self, route: str) -> None:
        e = event(self.n, route)
        self.n += 1
        self.route_of[e.event_id] = route
        self._expire()
        if len(self.pending) >= self.config.max_events:
            if self.config.full_policy == "reject_new":
                try:
                    self.journal.append(e)
                except JournalError:
                    return
                raise AssertionError("append to a full journal was not refused")
            over = len(self.pending) - self.config.max_events + 1
            victims = [self.pending.pop(0)[0] for _ in range(over)]
            self._to_dead(victims, "overflowed")
        self.journal.append(e)
        self.pending.append((e.event_id, route, self.clock.now, self.mono.now, e.clock_synced))

    @rule(route=st.sampled_from(["basket", "pending"]),
          failure=st.sampled_from(["enospc", "short", "eio-sync"]))
    def failing_append(self, route: str, failure: str) -> None:
        """A full or failing disk: the append is refused and nothing changes."""
        e = event(self.n, route)
        self.n += 1
        if failure == "eio-sync":
            self.ops.fail_sync = errno.EIO
        else:
            self.ops.fail_write, self.ops.short_first = errno.ENOSPC, failure == "short"
        try:
            with pytest.raises(JournalError):
                self.journal.append(e)
        finally:
            self.ops.fail_write = self.ops.fail_sync = None
            self.ops.short_first = False

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def failing_ack(self, data) -> None:
        event_id = data.draw(st.sampled_from(self.pending))[0]
        self.ops.fail_write = errno.EIO
        try:
            with pytest.raises(JournalError):
                self.journal.ack(event_id)
        finally:
            self.ops.fail_write = None

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def ack_pending(self, data) -> None:
        event_id = data.draw(st.sampled_from(self.pending))[0]
        self.journal.ack(event_id)
        self.pending = [p for p in self.pending if p[0] != event_id]

    @precondition(lambda self: self.dead)
    @rule(data=st.data())
    def ack_dead(self, data) -> None:
        event_id = data.draw(st.sampled_from(self.dead))
        self.journal.ack(event_id)
        self.dead.remove(event_id)

    @precondition(lambda self: self.pending)
    @rule(data=st.data(), status=st.sampled_from([400, 409, 422]))
    def dead_letter(self, data, status: int) -> None:
        event_id = data.draw(st.sampled_from(self.pending))[0]
        self.journal.dead_letter(event_id, status, "refused", "refused")
        self.pending = [p for p in self.pending if p[0] != event_id]
        self._to_dead([event_id], None)

    @rule(data=st.data(), everything=st.booleans())
    def requeue(self, data, everything: bool) -> None:
        if everything:
            wanted = None
            targets = list(self.dead)
        else:
            wanted = data.draw(st.lists(st.sampled_from(self.dead + ["unknown"]), max_size=3))
            targets = [i for i in dict.fromkeys(wanted) if i in self.dead]
        if self.config.full_policy == "reject_new":
            targets = targets[:max(0, self.config.max_events - len(self.pending))]
        assert self.journal.requeue(wanted) == len(targets)
        if not targets:
            return
        for event_id in targets:
            self.dead.remove(event_id)
            self.pending.append((event_id, self.route_of[event_id], self.clock.now,
                                 self.mono.now, False))
        over = len(self.pending) - self.config.max_events
        if over > 0:
            old = [p for p in self.pending if p[0] not in targets][:over]
            self.pending = [p for p in self.pending if p not in old]
            self._to_dead([p[0] for p in old], "overflowed")

    @rule(seconds=st.sampled_from([1.0, 30.0, 70.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.now += seconds
        self.mono.now += seconds

    @rule(days=st.sampled_from([30, 365]))
    def wall_clock_jumps(self, days: int) -> None:
        """NTP sets the clock of a device that was off for a month or a year."""
        self.clock.now += 1.0 + days * 86400.0
        self.mono.now += 1.0

    @rule()
    def look(self) -> None:
        """pending() expires too."""
        self._expire()
        assert [e.event.event_id for e in self.journal.pending(limit=1000)] == \
            [p[0] for p in self.pending]

    @rule()
    def reopen(self) -> None:
        self.journal.close()
        self._open()

    # -- checks --------------------------------------------------------------------------

    @invariant()
    def same_contents(self) -> None:
        if self.journal is None:
            return
        stats = self.journal.stats()
        assert stats.pending == len(self.pending)
        # stats() does not expire; compare without calling pending() (which would)
        assert [d.event_id for d in self.journal.dead_letters()] == self.dead
        assert stats.overflowed == self.counts["overflowed"]
        assert stats.expired == self.counts["expired"]
        assert stats.dead_dropped == self.counts["dead_dropped"]
        assert stats.lost_records == 0
        by_route: dict[str, int] = {}
        for entry in self.pending:
            by_route[entry[1]] = by_route.get(entry[1], 0) + 1
        assert stats.pending_by_route == by_route

    def teardown(self) -> None:
        if self.journal is not None:
            self.journal.close()
        shutil.rmtree(self.dir, ignore_errors=True)


JournalModel.TestCase.settings = settings(max_examples=60, stateful_step_count=30,
                                          deadline=None)
TestJournalModel = JournalModel.TestCase
