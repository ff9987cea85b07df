"""The journal's in-memory index, rebuilt by replaying records and kept by applying them.

The same :meth:`Index.apply` runs at open (replay) and after every write, so
what a restart rebuilds is by construction what the running journal held.
Items keep only where their defining record lies (segment, offset, size); the
event itself is read back from the file when asked for, so 100,000 pending
events cost a few tens of MB, not hundreds.

Replay is idempotent: a record applied twice (a compaction copy next to the
original a crash left behind) yields the same state. While replaying, only the
id maps are kept; the per-route queues and per-segment counts are built once
at the end, which keeps opening fast.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from operator import attrgetter

from agent.delivery import journal_records as rec
from agent.delivery.journal_records import Rec


class Item:
    """A pending event or a dead letter: identity, order key, age, and its record's place.

    ``synced``: ``at`` came from a synchronised wall clock. ``mono``: the monotonic
    time this process wrote it, or None when it was read at open.
    """

    __slots__ = ("at", "event_id", "mono", "offset", "route", "segment", "seq", "size", "synced")

    def __init__(self, event_id: str, route: str, seq: int, at: float, segment: int,
                 offset: int, size: int, synced: bool = True) -> None:
        self.event_id = event_id
        self.route = route
        self.seq = seq
        self.at = at
        self.segment = segment
        self.offset = offset
        self.size = size
        self.synced = synced
        self.mono: float | None = None


@dataclass
class Counters:
    next_seq: int = 1
    overflowed: int = 0
    expired: int = 0
    lost: int = 0
    dropped: int = 0

    def meta(self) -> Rec:
        return rec.make(rec.META, seq=self.next_seq, tail={
            "v": 1, "overflowed": self.overflowed, "expired": self.expired,
            "lost": self.lost, "dropped": self.dropped})

    def restore(self, record: Rec) -> None:
        """Absolute figures as of a segment's start: they outlive the older segments."""
        try:
            data = record.data()
            self.overflowed = int(data.get("overflowed", self.overflowed))
            self.expired = int(data.get("expired", self.expired))
            self.lost = int(data.get("lost", self.lost))
            self.dropped = int(data.get("dropped", self.dropped))
        except (ValueError, TypeError):
            pass  # counters are reporting, not data: keep what replay had so far


class Index:
    def __init__(self) -> None:
        self.pending: dict[str, Item] = {}
        self.dead: dict[str, Item] = {}  # oldest first
        self.routes: dict[str, dict[str, Item]] = {}  # per route, oldest first
        self.counters = Counters()
        self.live: dict[int, list[int]] = {}  # segment -> [live items defined there, bytes]
        self.replaying = True

    def live_bytes(self) -> int:
        return sum(size for _, size in self.live.values())

    # -- replay ----------------------------------------------------------------------------

    def apply(self, record: Rec, segment: int, offset: int, size: int) -> None:
        kind = record.kind
        counters = self.counters
        if kind == rec.EVENT or kind == rec.REQUEUE:
            self._place(self.pending, record, segment, offset, size)
        elif kind == rec.ACK:
            self._remove(record.id)
        elif kind == rec.DEAD:
            self._place(self.dead, record, segment, offset, size)
            if not record.flags & rec.COPY:
                if record.flags & rec.OVERFLOW:
                    counters.overflowed += 1
                elif record.flags & rec.EXPIRED:
                    counters.expired += 1
        elif kind == rec.DROP:
            # Counted even when the dead letter's own record went with an older segment:
            # a drop is only ever written for a dead letter that existed.
            self._remove(record.id)
            counters.dropped += 1
        elif kind == rec.LOST:
            try:
                counters.lost += int(json.loads(record.tail).get("n", 1))
            except (ValueError, TypeError, AttributeError):
                counters.lost += 1
        elif kind == rec.META:
            counters.restore(record)
        if kind in rec.DEFINING:
            if record.seq >= counters.next_seq:
                counters.next_seq = record.seq + 1
        elif kind == rec.META and record.seq > counters.next_seq:
            counters.next_seq = record.seq

    def add_event(self, event_id: str, route: str, seq: int, at: float, segment: int,
                  offset: int, size: int, synced: bool) -> Item:
        """What :meth:`apply` does with a new event's record, for an id not yet known
        (neither pending nor dead) after replay: the append fast path, without a Rec."""
        item = Item(event_id, route, seq, at, segment, offset, size, synced)
        self.pending[event_id] = item
        queue = self.routes.get(route)
        if queue is None:
            queue = self.routes[route] = {}
        queue[event_id] = item
        entry = self.live.get(segment)
        if entry is None:
            entry = self.live[segment] = [0, 0]
        entry[0] += 1
        entry[1] += size
        counters = self.counters
        if seq >= counters.next_seq:
            counters.next_seq = seq + 1
        return item

    def finish_replay(self) -> None:
        """Build the route queues and segment counts, in seq order."""
        self.replaying = False
        routes: dict[str, dict[str, Item]] = {}
        live: dict[int, list[int]] = {}
        for item in sorted(self.pending.values(), key=_seq):
            queue = routes.get(item.route)
            if queue is None:
                queue = routes[item.route] = {}
            queue[item.event_id] = item
        self.routes = routes
        self.dead = {item.event_id: item for item in sorted(self.dead.values(), key=_seq)}
        for items in (self.pending.values(), self.dead.values()):
            for item in items:
                entry = live.get(item.segment)
                if entry is None:
                    entry = live[item.segment] = [0, 0]
                entry[0] += 1
                entry[1] += item.size
        self.live = live

    def _place(self, target: dict[str, Item], record: Rec, segment: int, offset: int,
               size: int) -> None:
        event_id = record.id
        current = target.get(event_id)
        if current is not None and current.seq == record.seq:
            # A compaction copy: same place in line, new place on disk.
            if not self.replaying:
                self._count(current, -1)
            current.segment, current.offset, current.size = segment, offset, size
            if not self.replaying:
                self._count(current, +1)
            return
        if current is not None or event_id in self.pending or event_id in self.dead:
            self._remove(event_id)
        item = Item(event_id, record.route, record.seq, record.at, segment, offset, size,
                    not record.flags & rec.UNSYNCED)
        target[event_id] = item
        if not self.replaying:
            if target is self.pending:
                self.routes.setdefault(item.route, {})[event_id] = item
            self._count(item, +1)

    def _remove(self, event_id: str) -> None:
        item = self.pending.pop(event_id, None)
        if item is None:
            item = self.dead.pop(event_id, None)
            if item is None:
                return
        elif not self.replaying:
            queue = self.routes[item.route]
            del queue[event_id]
            if not queue:
                del self.routes[item.route]
        if not self.replaying:
            self._count(item, -1)

    def _count(self, item: Item, sign: int) -> None:
        entry = self.live.get(item.segment)
        if entry is None:
            entry = self.live[item.segment] = [0, 0]
        entry[0] += sign
        entry[1] += sign * item.size


_seq = attrgetter("seq")
