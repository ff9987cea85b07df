"""The journal's in-memory index, rebuilt by replaying records and kept by applying them.

The same :meth:`Index.apply` runs at open (replay) and after every write, so
what a restart rebuilds is by construction what the running journal held.
Items keep only where their defining record lies (segment, offset, size); the
event itself is read back from the file when asked for, so 100,000 pending
events cost a few tens of MB, not hundreds.

Replay is idempotent: a record applied twice (a compaction copy next to the
original a crash left behind) yields the same state.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from agent.delivery import journal_records as rec


class Item:
    """A pending event or a dead letter: identity, order key, age, and its record's place."""

    __slots__ = ("event_id", "route", "seq", "at", "segment", "offset", "size")

    def __init__(self, event_id: str, route: str, seq: int, at: float, segment: int,
                 offset: int, size: int) -> None:
        self.event_id = event_id
        self.route = route
        self.seq = seq
        self.at = at
        self.segment = segment
        self.offset = offset
        self.size = size


@dataclass
class Counters:
    next_seq: int = 1
    overflowed: int = 0
    expired: int = 0
    lost: int = 0
    dropped: int = 0

    def meta(self) -> dict[str, Any]:
        return {"k": rec.KIND_META, "v": 1, "next_seq": self.next_seq,
                "overflowed": self.overflowed, "expired": self.expired, "lost": self.lost,
                "dropped": self.dropped}


class Index:
    def __init__(self) -> None:
        self.routes: dict[str, OrderedDict[str, Item]] = {}
        self.pending: dict[str, Item] = {}
        self.dead: OrderedDict[str, Item] = OrderedDict()
        self.counters = Counters()
        # segment -> [live items defined there, their bytes]
        self.live: dict[int, list[int]] = {}

    # -- queries ---------------------------------------------------------------------------

    def oldest_pending(self) -> Item | None:
        heads = [next(iter(q.values())) for q in self.routes.values() if q]
        return min(heads, key=lambda item: item.seq) if heads else None

    def pending_count(self, route: str) -> int:
        queue = self.routes.get(route)
        return len(queue) if queue else 0

    def live_bytes(self) -> int:
        return sum(size for _, size in self.live.values())

    # -- replay ----------------------------------------------------------------------------

    def apply(self, payload: dict[str, Any], segment: int, offset: int, size: int) -> None:
        kind = payload["k"]
        counters = self.counters
        if kind == rec.KIND_EVENT or kind == rec.KIND_REQUEUE:
            self._place_pending(payload, segment, offset, size)
        elif kind == rec.KIND_ACK:
            self._remove(payload["id"])
        elif kind == rec.KIND_DEAD:
            self._place_dead(payload, segment, offset, size)
            if not payload.get("c"):
                if payload.get("reason") == "overflow":
                    counters.overflowed += 1
                elif payload.get("reason") == "expired":
                    counters.expired += 1
        elif kind == rec.KIND_DROP:
            # Counted even when the dead letter's own record is gone with an older segment:
            # a drop is only ever written for a dead letter that existed.
            self._remove(payload["id"])
            counters.dropped += 1
        elif kind == rec.KIND_LOST:
            counters.lost += payload["n"]
        elif kind == rec.KIND_META:
            # Absolute figures as of the segment's start: they survive the deletion of
            # the older segments whose records produced them.
            counters.overflowed = int(payload.get("overflowed", counters.overflowed))
            counters.expired = int(payload.get("expired", counters.expired))
            counters.lost = int(payload.get("lost", counters.lost))
            counters.dropped = int(payload.get("dropped", counters.dropped))
        if kind in rec.DEFINING_KINDS:
            counters.next_seq = max(counters.next_seq, payload["seq"] + 1)
        elif kind == rec.KIND_META:
            counters.next_seq = max(counters.next_seq, payload["next_seq"])

    def finish_replay(self) -> None:
        """Order by seq: compaction copies may have been replayed after newer records."""
        for route, queue in self.routes.items():
            self.routes[route] = OrderedDict(sorted(queue.items(), key=lambda kv: kv[1].seq))
        self.dead = OrderedDict(sorted(self.dead.items(), key=lambda kv: kv[1].seq))

    def _place_pending(self, payload: dict[str, Any], segment: int, offset: int,
                       size: int) -> None:
        event_id = payload["id"]
        current = self.pending.get(event_id)
        if current is not None and current.seq == payload["seq"]:
            self._relocate(current, segment, offset, size)  # a compaction copy: same place in line
            return
        self._remove(event_id)
        item = Item(event_id, payload["r"], payload["seq"], float(payload["at"]), segment,
                    offset, size)
        self.pending[event_id] = item
        self.routes.setdefault(item.route, OrderedDict())[event_id] = item
        self._count(item, +1)

    def _place_dead(self, payload: dict[str, Any], segment: int, offset: int,
                    size: int) -> None:
        event_id = payload["id"]
        current = self.dead.get(event_id)
        if current is not None and current.seq == payload["seq"]:
            self._relocate(current, segment, offset, size)
            return
        self._remove(event_id)
        item = Item(event_id, payload["r"], payload["seq"], float(payload["at"]), segment,
                    offset, size)
        self.dead[event_id] = item
        self._count(item, +1)

    def _remove(self, event_id: str) -> bool:
        item = self.pending.pop(event_id, None)
        if item is not None:
            queue = self.routes[item.route]
            del queue[event_id]
            if not queue:
                del self.routes[item.route]
        else:
            item = self.dead.pop(event_id, None)
        if item is None:
            return False
        self._count(item, -1)
        return True

    def _relocate(self, item: Item, segment: int, offset: int, size: int) -> None:
        self._count(item, -1)
        item.segment, item.offset, item.size = segment, offset, size
        self._count(item, +1)

    def _count(self, item: Item, sign: int) -> None:
        entry = self.live.setdefault(item.segment, [0, 0])
        entry[0] += sign
        entry[1] += sign * item.size
