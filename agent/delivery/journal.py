"""The durable journal: every event is on disk before anyone tries to send it.

Layout: ``state_dir/journal/`` holds ``LOCK`` (flock: one writer) and numbered
segment files ``seg-NNNNNNNN.log`` of CRC32-framed records
(:mod:`journal_records`: a binary head, then JSON): ``event``, ``ack``,
``dead``, ``requeue``, ``drop`` (a dead letter discarded at its bound), ``lost``
(damage found at open) and ``meta`` (counters, at the start of every segment).
Opening (:mod:`journal_load`) replays the segments in order into an in-memory
index (:mod:`journal_index`); a damaged stretch is skipped, the intact records
are kept, the original file is moved aside and the loss is counted in
``stats().lost_records`` and logged at ERROR. Opening never raises on damaged
or unreadable segments or a full disk, only when the journal directory itself
fails and on a held lock. Writing and compaction are in :mod:`journal_store`,
the files in :mod:`journal_segments`.
Compaction (at each new segment) deletes the oldest segment once nothing in
it is live, copying its few live records forward first when that frees space.

Durability and fsync cadence, chosen for SD cards (each fsync costs
milliseconds and flash wear):

- ``append`` makes one ``pwrite`` of the framed record (plus, in the same
  write, any overflow/expiry records) and one ``fdatasync`` before it returns.
  An appended event survives ``kill -9`` and a power cut. Segments are zeroed
  ahead in 256 KiB chunks, so that ``fdatasync`` flushes the data block alone:
  no file-size change and no filesystem-journal commit per event (cheaper, and
  less wear on an SD card; one extra write of zeroes per ~800 events).
- ``ack`` writes its record at once (``kill -9`` loses nothing) and
  ``fdatasync``s every ``ACK_SYNC_EVERY`` (32) acks. Sooner: any ``append``,
  ``dead_letter`` or ``requeue`` (same file), a new segment and ``close``; and
  ``pending``, ``ack`` or ``stats`` once ``ACK_SYNC_S`` (1 s) has passed since
  the oldest unsynced ack. Nothing runs on a timer: an idle journal keeps its
  unsynced acks until the next such call, however long that takes.
- ``dead_letter`` and ``requeue`` are rare and ``fdatasync`` every time.
- New segments are ``fdatasync``ed and the directory ``fsync``ed before use;
  a segment is deleted (and the directory fsynced) only after the live records
  it held were copied forward and synced.

What a power cut can lose: never an appended event. It can undo at most
``ACK_SYNC_EVERY - 1`` (31) acks, however long ago they were made (see above),
whose events are then sent again (the backend drops the repeats by their
Idempotency-Key), and tear the record being
written at that instant (an append that had not returned, so the caller still
holds the event; or an ack: one more repeat), which the next open moves aside
and counts. Zeroes at the end of a segment read as space zeroed ahead, so the
one kind of damage opening cannot tell from it is a tail zeroed by the storage
itself. Storage that acknowledges a flush before the data is on flash
(some cheap SD cards) can lose more; no software can prevent that.

Expiry (``journal.max_age_s``) must survive a wall clock that jumps: a Pi has
no real-time clock, and after a month switched off it runs a month behind
until NTP sets it. An event's age is therefore a lower bound on how long it
has really been pending, never more:

- written by this process (appended or requeued): monotonic time since then;
- read at open: monotonic time since the open, or, if the wall clock was
  synchronised when it was appended (``ProductEvent.clock_synced``, stored as a
  record flag), the wall clock's age (now - appended_at) when that is larger.
  Before NTP the wall clock runs behind (fake-hwclock, or a date in the past),
  so that age then comes out short, not long. Requeued events count as
  unsynchronised (a requeue may run before NTP).

So a clock jump cannot expire an event early; a restart can only postpone
the expiry of an unsynchronised event (its age starts again at the open). The
same age is ``stats().oldest_age_s``. Expiry is checked at most once a second
(monotonic) by ``append`` and ``pending``.

``ENOSPC``/``EIO`` on a write raise :class:`JournalError`; the partial record
is cut back (or, if even that fails, before the next write; at worst it is
skipped by the CRC check at open), so the journal stays intact and appends
work again when space returns.
"""

from __future__ import annotations

import heapq
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import structlog

from agent.basket.event import ProductEvent
from agent.config import JournalConfig
from agent.delivery import journal_records as rec
from agent.delivery.journal_event import event_dict, event_tail
from agent.delivery.journal_index import Item
from agent.delivery.journal_load import Loaded, load, lock
from agent.delivery.journal_records import Rec
from agent.delivery.journal_segments import FileOps
from agent.delivery.journal_store import SegmentStore
from agent.errors import JournalError

log = structlog.get_logger(__name__)

ACK_SYNC_EVERY = 32
ACK_SYNC_S = 1.0
SEGMENT_BYTES = 4 << 20
BODY_MAX = 500
EXPIRY_CHECK_S = 1.0


@dataclass(frozen=True)
class JournalEntry:
    seq: int
    event: ProductEvent
    appended_at: float  # wall seconds


@dataclass(frozen=True)
class DeadLetter:
    event: ProductEvent
    status: int
    body: str  # the first BODY_MAX characters of the backend's answer
    reason: str  # "refused", "overflow", "expired", ...
    dead_at: float  # wall seconds

    @property
    def event_id(self) -> str:
        return self.event.event_id


@dataclass(frozen=True)
class JournalStats:
    pending: int
    pending_by_route: dict[str, int]
    oldest_age_s: float | None  # of the first-appended pending event, as expiry measures it
    dead_letters: int
    lost_records: int
    overflowed: int
    expired: int
    dead_dropped: int = 0


class Journal:
    """Append-only, CRC-framed, segment-file journal. Thread-safe: one lock around everything."""

    def __init__(self, directory: Path, config: JournalConfig, opened: Loaded, *,
                 wall_clock: Callable[[], float], clock: Callable[[], float], read_only: bool,
                 ops: FileOps, segment_bytes: int, lock_fd: int | None) -> None:
        self.directory = directory
        self.config = config
        self.read_only = read_only
        self._wall = wall_clock
        self._clock = clock
        self._lock_fd = lock_fd
        self._store = SegmentStore(directory, opened, ops, segment_bytes)
        self._index = opened.index
        self._mutex = threading.RLock()
        self._unsynced_since = 0.0
        self._expiry_checked = float("-inf")  # monotonic seconds of the last expiry check
        # Every event read at open has been pending at least since now (see "Expiry").
        self._opened = clock()
        # No event read at open with a synchronised ``at`` is older than this (wall seconds).
        self._synced_floor = min((item.at for item in self._index.pending.values()
                                  if item.synced), default=float("inf"))
        self._closed = False

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, state_dir: Path, config: JournalConfig, *,
             wall_clock: Callable[[], float] = time.time, read_only: bool = False,
             clock: Callable[[], float] = time.monotonic, ops: FileOps | None = None,
             segment_bytes: int = SEGMENT_BYTES) -> Journal:
        """Open (creating unless read-only) ``state_dir/journal`` and rebuild the index.

        ``clock`` (monotonic) paces the ack syncs; ``ops`` is the seam under every
        write; ``segment_bytes`` is where a new segment starts.
        """
        directory = Path(state_dir) / "journal"
        ops = ops or FileOps()
        if read_only:
            opened = load(directory, repair=False)
            return cls(directory, config, opened, wall_clock=wall_clock, clock=clock,
                       read_only=True, ops=ops, segment_bytes=segment_bytes, lock_fd=None)
        lock_fd = lock(directory)
        journal = None
        try:
            opened = load(directory, repair=True)
            journal = cls(directory, config, opened, wall_clock=wall_clock, clock=clock,
                          read_only=False, ops=ops, segment_bytes=segment_bytes,
                          lock_fd=lock_fd)
            journal._store.start(opened.lost_now)
        except BaseException:
            if journal is not None:
                journal._release()
            else:
                os.close(lock_fd)
            raise
        return journal

    # -- the interface ---------------------------------------------------------------------

    def append(self, event: ProductEvent) -> None:
        """Durable on return (``fdatasync``); JournalError on a full or failing disk."""
        with self._mutex:
            if self._closed or self.read_only:
                self._writable()  # raises
            index = self._index
            event_id = event.event_id
            if event_id in index.pending or event_id in index.dead:
                log.warning("event already journaled; not appended twice", event_id=event_id)
                return
            now = self._wall()
            mono = self._clock()
            if (0.0 <= mono - self._expiry_checked < EXPIRY_CHECK_S
                    and len(index.pending) < self.config.max_events):
                # The usual case: no expiry check due, room for the event, so nothing
                # to write but its record (byte for byte what the general path writes).
                self._store.append_event(
                    event_id, event.route, float(now),
                    0 if event.clock_synced else rec.UNSYNCED, event_tail(event)).mono = mono
                return
            records = self._expiry_records(now, mono)
            leaving = {r.id for r in records}
            over = len(index.pending) - len(leaving) + 1 - self.config.max_events
            if over > 0 and self.config.full_policy == "reject_new":
                if records:
                    self._commit_expiry(records)
                raise JournalError(
                    f"journal full: {len(index.pending)} events pending "
                    f"(journal.max_events = {self.config.max_events}); new event refused",
                    fix="let the agent deliver (check the backend), or raise "
                        "journal.max_events or set journal.full_policy = \"drop_oldest\"")
            if over > 0:
                victims = list(_take(self._oldest_first(leaving), over))
                for item in victims:
                    self._add_dead(records, item, 0, "", "overflow", now, rec.OVERFLOW)
                log.error("journal full: oldest events moved to dead letters",
                          count=len(victims), max_events=self.config.max_events,
                          event_ids=[item.event_id for item in victims[:5]])
            records += self._drop_records(records)
            records.append(rec.make(rec.EVENT, id=event.event_id, route=event.route,
                                    seq=self._next_seq(records), at=now,
                                    flags=0 if event.clock_synced else rec.UNSYNCED,
                                    tail={"e": event_dict(event)}))
            try:
                self._store.commit(records, sync=True)
            except JournalError:
                self._expiry_failed()  # what expired is still to be moved
                raise
            index.pending[event.event_id].mono = mono

    def pending(self, route: str | None = None, limit: int = 100) -> list[JournalEntry]:
        """Undelivered events, oldest first (per route when ``route`` is given)."""
        with self._mutex:
            self._open_or_raise()
            if not self.read_only:
                self._expire_now()
                self._ack_sync_due()
            if route is not None:
                source: Iterable[Item] = self._index.routes.get(route, {}).values()
            else:
                source = self._oldest_first(set())
            entries = []
            for item in _take(source, max(0, limit)):
                entries.append(JournalEntry(item.seq, self._store.event(item), item.at))
            return entries

    def ack(self, event_id: str) -> None:
        """Delivered: the event leaves the journal (synced in batches, see the module doc)."""
        with self._mutex:
            self._writable()
            if event_id not in self._index.pending and event_id not in self._index.dead:
                log.debug("ack for an event not in the journal", event_id=event_id)
                return
            store = self._store
            store.commit([rec.make(rec.ACK, id=event_id)], sync=False)
            if store.unsynced == 1:
                self._unsynced_since = self._clock()
            if store.unsynced >= ACK_SYNC_EVERY:
                store.sync()
            else:
                self._ack_sync_due()

    def dead_letter(self, event_id: str, status: int, body: str, reason: str) -> None:
        """Refused for good: from pending to the dead letters (bounded, oldest dropped)."""
        with self._mutex:
            self._writable()
            item = self._index.pending.get(event_id)
            if item is None:
                log.warning("dead letter for an event not pending", event_id=event_id,
                            reason=reason)
                return
            records: list[Rec] = []
            self._add_dead(records, item, status, body, reason, self._wall())
            self._store.commit(records + self._drop_records(records), sync=True)

    def dead_letters(self) -> list[DeadLetter]:
        with self._mutex:
            self._open_or_raise()
            letters = []
            for item in self._index.dead.values():
                data = self._store.tail(item)
                letters.append(DeadLetter(self._store.event(item, data), int(data.get("status", 0)),
                                          str(data.get("body", "")), str(data.get("reason", "")),
                                          float(data.get("when", 0.0))))
            return letters

    def requeue(self, event_ids: list[str] | None = None) -> int:
        """Dead letters back to pending with the same event_id; returns how many."""
        with self._mutex:
            self._writable()
            index = self._index
            wanted = list(index.dead) if event_ids is None else list(dict.fromkeys(event_ids))
            targets = [index.dead[i] for i in wanted if i in index.dead]
            room = self.config.max_events - len(index.pending)
            if self.config.full_policy == "reject_new" and len(targets) > room:
                log.warning("journal nearly full: requeueing only what fits",
                            asked=len(targets), requeued=max(0, room))
                targets = targets[:max(0, room)]
            if not targets:
                return 0
            now = self._wall()
            mono = self._clock()
            records: list[Rec] = []
            for item in targets:
                # UNSYNCED: nothing says the wall clock is right now (requeue may run
                # before NTP), so the new age is counted in monotonic time only.
                records.append(rec.make(rec.REQUEUE, id=item.event_id, route=item.route,
                                        seq=self._next_seq(records), at=now,
                                        flags=rec.UNSYNCED,
                                        tail={"e": self._store.tail(item)["e"]}))
            over = len(index.pending) + len(records) - self.config.max_events
            if over > 0:
                requeued = {r.id for r in records}
                for victim in list(_take(self._oldest_first(requeued), over)):
                    self._add_dead(records, victim, 0, "", "overflow", now, rec.OVERFLOW)
            self._store.commit(records + self._drop_records(records), sync=True)
            for record in records:
                if record.kind == rec.REQUEUE:
                    index.pending[record.id].mono = mono
            log.info("dead letters requeued", count=len(targets))
            return len(targets)

    def stats(self) -> JournalStats:
        """Counts and the oldest age; also syncs acks that are due (see the module doc)."""
        with self._mutex:
            if not self.read_only and not self._closed:
                try:
                    self._ack_sync_due()
                except JournalError as exc:  # reporting must not fail; the next call retries
                    log.error("journal ack sync failed", error=str(exc))
            index = self._index
            wall, mono = self._wall(), self._clock()
            oldest = max((self._age(next(iter(q.values())), wall, mono)
                          for q in index.routes.values() if q), default=None)
            counters = index.counters
            return JournalStats(
                pending=len(index.pending),
                pending_by_route={route: len(q) for route, q in index.routes.items() if q},
                oldest_age_s=None if oldest is None else max(0.0, oldest),
                dead_letters=len(index.dead),
                lost_records=counters.lost,
                overflowed=counters.overflowed,
                expired=counters.expired,
                dead_dropped=counters.dropped,
            )

    def close(self) -> None:
        """Sync what is unsynced, close the files, release the lock. Idempotent."""
        with self._mutex:
            if self._closed:
                return
            try:
                self._store.sync()
            finally:
                self._release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ack_sync_due(self) -> None:
        if self._store.unsynced and self._clock() - self._unsynced_since >= ACK_SYNC_S:
            self._store.sync()

    # -- bounds ----------------------------------------------------------------------------

    def _age(self, item: Item, wall: float, mono: float) -> float:
        """How long ``item`` has surely been pending (see "Expiry" in the module doc)."""
        if item.mono is not None:  # written by this process: monotonic time alone
            return mono - item.mono
        age = mono - self._opened  # read at open: pending at least since then
        if item.synced:
            age = max(age, wall - item.at)
        return age

    def _expiry_records(self, now: float, mono: float) -> list[Rec]:
        records: list[Rec] = []
        if 0.0 <= mono - self._expiry_checked < EXPIRY_CHECK_S:
            return records  # ages are coarse (max_age_s >= 1 s): not on every append
        self._expiry_checked = mono
        max_age = self.config.max_age_s
        if mono - self._opened < max_age:
            # Everything written since the open is younger than max_age_s, and so is
            # what was read at open, unless its synchronised wall age says otherwise.
            if now - self._synced_floor < max_age:
                return records  # the common case, without merging the routes
            floor = float("inf")
            for item in self._oldest_first(set()):
                if item.mono is not None:
                    break  # written since the open: all that follows is too
                if not item.synced:
                    continue
                if now - item.at < max_age:
                    # ``at`` rises with seq unless the wall clock was set back, in which
                    # case what follows expires later than it could, never too early.
                    floor = item.at
                    break
                self._add_dead(records, item, 0, "", "expired", now, rec.EXPIRED)
            self._synced_floor = floor
        else:
            # All that was read at open is old enough; what was written since ages in
            # monotonic time, so ages fall with seq along each route.
            heads = (next(iter(queue.values())) for queue in self._index.routes.values())
            if all(self._age(head, now, mono) < max_age for head in heads):
                return records  # the common case, without merging the routes
            for item in self._oldest_first(set()):
                if self._age(item, now, mono) < max_age:
                    break
                self._add_dead(records, item, 0, "", "expired", now, rec.EXPIRED)
        if records:
            log.error("events older than journal.max_age_s moved to dead letters",
                      count=len(records), max_age_s=self.config.max_age_s)
        return records

    def _expire_now(self) -> None:
        records = self._expiry_records(self._wall(), self._clock())
        if records:
            self._commit_expiry(records)

    def _commit_expiry(self, records: list[Rec]) -> None:
        try:
            self._store.commit(records + self._drop_records(records), sync=True)
        except JournalError:
            self._expiry_failed()  # not moved: look again next time
            raise

    def _expiry_failed(self) -> None:
        self._expiry_checked = float("-inf")
        self._synced_floor = float("-inf")

    def _drop_records(self, records: list[Rec]) -> list[Rec]:
        """Drops of the oldest dead letters so the store stays within max_dead_letters."""
        if not records:
            return []
        new_dead = [r.id for r in records if r.kind == rec.DEAD]
        requeued = {r.id for r in records if r.kind == rec.REQUEUE}
        dead = self._index.dead
        staying = len(dead) - sum(1 for i in requeued if i in dead)
        excess = staying + len(new_dead) - self.config.max_dead_letters
        if excess <= 0:
            return []
        old_dead = (i for i in dead if i not in requeued)
        victims = list(_take(_chain(old_dead, new_dead), excess))
        log.error("dead letters over journal.max_dead_letters: oldest dropped",
                  count=len(victims), max_dead_letters=self.config.max_dead_letters)
        return [rec.make(rec.DROP, id=event_id) for event_id in victims]

    def _add_dead(self, records: list[Rec], item: Item, status: int, body: str, reason: str,
                  now: float, flags: int = 0) -> None:
        """Add a record moving ``item`` to the dead letters to this batch."""
        tail = {"e": self._store.tail(item)["e"], "status": int(status),
                "body": str(body)[:BODY_MAX], "reason": reason, "when": now}
        if not item.synced:
            flags |= rec.UNSYNCED
        records.append(rec.make(rec.DEAD, id=item.event_id, route=item.route,
                                seq=self._next_seq(records), at=item.at, flags=flags,
                                tail=tail))

    def _next_seq(self, records: list[Rec]) -> int:
        """The seq after those already handed out in this batch of records."""
        if not records:
            return self._index.counters.next_seq
        seqs = [r.seq for r in records if r.kind in rec.DEFINING]
        return max(seqs) + 1 if seqs else self._index.counters.next_seq

    def _oldest_first(self, skip: set[str]) -> Iterator[Item]:
        merged = heapq.merge(*(q.values() for q in self._index.routes.values()),
                             key=lambda item: item.seq)
        return (item for item in merged if item.event_id not in skip)

    # -- state -----------------------------------------------------------------------------

    def _writable(self) -> None:
        self._open_or_raise()
        if self.read_only:
            raise JournalError("journal opened read-only",
                               fix="this command only reads; stop the service to change it")

    def _open_or_raise(self) -> None:
        if self._closed:
            raise JournalError("journal is closed", fix="open it again")

    def _release(self) -> None:
        self._closed = True
        self._store.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the file releases the flock
            self._lock_fd = None


# -- helpers -------------------------------------------------------------------------------


def _take(items: Iterable[Any], n: int) -> Iterator[Any]:
    for count, item in enumerate(items):
        if count >= n:
            return
        yield item


def _chain(first: Iterable[str], second: Iterable[str]) -> Iterator[str]:
    yield from first
    yield from second
