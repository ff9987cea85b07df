"""The durable journal: every event is on disk before anyone tries to send it.

Layout: ``state_dir/journal/`` holds ``LOCK`` and numbered segment files of
CRC32-framed JSON records (:mod:`journal_records`); records are ``event``,
``ack``, ``dead``, ``requeue``, ``drop`` (a dead letter discarded at the bound),
``lost`` (damage found at open) and ``meta`` (counters, written at the start of
every segment). Opening replays the segments in order into an in-memory index
(:mod:`journal_index`); a damaged stretch is skipped, the intact records are
kept, the original file is moved aside and the loss is counted in
``stats().lost_records`` and logged at ERROR. Opening never raises on damaged
content, only on real I/O errors and a held lock.

Durability and fsync cadence (chosen for SD cards, where every fsync costs a
flash program cycle and milliseconds):

- ``append`` writes the event record and calls ``fdatasync`` before it
  returns. An appended event survives ``kill -9`` and a power cut. One
  ``fdatasync`` per append, no more: the write is a single ``write`` call of
  the framed record (plus, in the same call, any overflow/expiry records).
- ``ack`` writes its record at once (so ``kill -9`` loses nothing) but
  ``fdatasync``s only every ``ACK_SYNC_EVERY`` acks, when the oldest unsynced
  ack is ``ACK_SYNC_S`` old at the next journal call, at the next append
  (which syncs the same file), and at ``close``. A power cut can therefore
  forget up to ``ACK_SYNC_EVERY - 1`` acks (plus those of the last second before
  the cut when the journal sat idle): those events are sent again and the
  backend drops the repeats by their Idempotency-Key. It never loses an
  appended event.
- ``dead_letter`` and ``requeue`` are rare and ``fdatasync`` each time.
- New segments are ``fdatasync``ed and their directory ``fsync``ed before use;
  a segment is deleted only after the live records it held were copied
  forward and synced, so compaction never loses a record.

What a power cut can lose: the record being written at that instant (an
append that had not returned, so the caller still holds the event; or an ack,
which means one duplicate send) and up to ``ACK_SYNC_EVERY - 1`` acks as said.
Storage that acknowledges a flush before the data is on flash (some cheap SD
cards) can lose more; no software can prevent that.

``ENOSPC``/``EIO`` on a write raise :class:`JournalError`; the partial record
is cut back (or, if even that fails, cut back before the next write and
skipped by the CRC check at open), so the journal stays intact and appends
work again when space returns.
"""

from __future__ import annotations

import dataclasses
import errno
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
from agent.delivery.journal_index import Item
from agent.delivery.journal_load import Loaded, load, lock
from agent.delivery.journal_records import Rec
from agent.delivery.journal_segments import (
    ActiveSegment,
    FileOps,
    segment_name,
)
from agent.errors import JournalError
from agent.fsutil import fsync_dir

log = structlog.get_logger(__name__)

ACK_SYNC_EVERY = 32
ACK_SYNC_S = 1.0
SEGMENT_BYTES = 4 << 20
BODY_MAX = 500


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
    oldest_age_s: float | None
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
        self._ops = ops
        self._segment_bytes = segment_bytes
        self._lock_fd = lock_fd
        self._index = opened.index
        self._fds = opened.fds
        self._sizes = opened.sizes
        self._mutex = threading.RLock()
        self._active: ActiveSegment | None = None
        self._unsynced_acks = 0
        self._unsynced_since = 0.0
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
            journal._start_writing(opened.lost_now)
        except BaseException:
            if journal is not None:
                journal._release()
            else:
                os.close(lock_fd)
            raise
        return journal

    def _start_writing(self, lost_now: int) -> None:
        """Take the last segment for appends and record what opening found.

        A full disk does not stop the open: the journal comes up readable, appends
        raise JournalError until there is room (the first one creates the segment
        if that is what failed), and the loss count is kept in memory meanwhile.
        """
        numbers = sorted(self._sizes)
        if numbers:
            try:
                self._active = ActiveSegment(self.directory, numbers[-1], self._ops,
                                             create=False)
                self._fds.setdefault(numbers[-1], _open_read(self._active.path))
            except OSError as exc:
                raise _write_error(exc, self.directory) from exc
        try:
            if self._active is None:
                self._ensure_active()
            elif self._active.size == 0:
                self._commit([self._index.counters.meta()], sync=True, may_roll=False)
            if lost_now:
                self._commit([rec.make(rec.LOST, tail={"n": lost_now})], sync=True,
                             may_roll=False)
                lost_now = 0
        except JournalError as exc:
            log.error("journal not writable at open; appends fail until it is",
                      error=str(exc))
            self._index.counters.lost += lost_now

    # -- the interface ---------------------------------------------------------------------

    def append(self, event: ProductEvent) -> None:
        """Durable on return (``fdatasync``); JournalError on a full or failing disk."""
        with self._mutex:
            self._writable()
            index = self._index
            if event.event_id in index.pending or event.event_id in index.dead:
                log.warning("event already journaled; not appended twice",
                            event_id=event.event_id)
                return
            now = self._wall()
            records = self._expiry_records(now)
            leaving = {r.id for r in records}
            over = len(index.pending) - len(leaving) + 1 - self.config.max_events
            if over > 0 and self.config.full_policy == "reject_new":
                if records:
                    self._commit(records + self._drop_records(records), sync=True)
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
                                    tail={"e": _event_dict(event)}))
            self._commit(records, sync=True)

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
                entries.append(JournalEntry(item.seq, self._event(item), item.at))
            return entries

    def ack(self, event_id: str) -> None:
        """Delivered: the event leaves the journal (synced in batches, see the module doc)."""
        with self._mutex:
            self._writable()
            if event_id not in self._index.pending and event_id not in self._index.dead:
                log.debug("ack for an event not in the journal", event_id=event_id)
                return
            self._commit([rec.make(rec.ACK, id=event_id)], sync=False)
            if self._unsynced_acks == 0:
                self._unsynced_since = self._clock()
            self._unsynced_acks += 1
            if self._unsynced_acks >= ACK_SYNC_EVERY:
                self._sync_acks()
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
            self._commit(records + self._drop_records(records), sync=True)

    def dead_letters(self) -> list[DeadLetter]:
        with self._mutex:
            self._open_or_raise()
            letters = []
            for item in self._index.dead.values():
                data = self._tail(item)
                letters.append(DeadLetter(self._event(item, data), int(data.get("status", 0)),
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
            records: list[Rec] = []
            for item in targets:
                records.append(rec.make(rec.REQUEUE, id=item.event_id, route=item.route,
                                        seq=self._next_seq(records), at=now,
                                        tail={"e": self._tail(item)["e"]}))
            over = len(index.pending) + len(records) - self.config.max_events
            if over > 0:
                requeued = {r.id for r in records}
                for victim in list(_take(self._oldest_first(requeued), over)):
                    self._add_dead(records, victim, 0, "", "overflow", now, rec.OVERFLOW)
            self._commit(records + self._drop_records(records), sync=True)
            log.info("dead letters requeued", count=len(targets))
            return len(targets)

    def stats(self) -> JournalStats:
        with self._mutex:
            index = self._index
            oldest = min((next(iter(q.values())).at for q in index.routes.values() if q),
                         default=None)
            counters = index.counters
            return JournalStats(
                pending=len(index.pending),
                pending_by_route={route: len(q) for route, q in index.routes.items() if q},
                oldest_age_s=None if oldest is None else max(0.0, self._wall() - oldest),
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
                if self._active is not None and self._unsynced_acks:
                    self._sync_acks()
            finally:
                self._release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------

    def _commit(self, records: list[Rec], *, sync: bool,
                may_roll: bool = True) -> None:
        frames = [rec.encode(r) for r in records]
        data = b"".join(frames)
        active = self._ensure_active()
        rolled = False
        if may_roll and active.size > 0 and active.size + len(data) > self._segment_bytes:
            self._roll()
            active = self._ensure_active()
            rolled = True
        try:
            offset = active.append(data, sync=sync)
        except OSError as exc:
            raise _write_error(exc, self.directory) from exc
        self._sizes[active.number] = active.size
        for record, frame in zip(records, frames):
            self._index.apply(record, active.number, offset, len(frame))
            offset += len(frame)
        if sync:
            self._unsynced_acks = 0
        if rolled:
            self._compact()

    def _ensure_active(self) -> ActiveSegment:
        if self._active is None:
            try:
                self._new_segment(max(self._sizes, default=0) + 1)
            except OSError as exc:
                raise _write_error(exc, self.directory) from exc
        assert self._active is not None
        return self._active

    def _roll(self) -> None:
        active = self._active
        assert active is not None
        try:
            active.sync()
            self._new_segment(active.number + 1)
        except OSError as exc:
            raise _write_error(exc, self.directory) from exc
        active.close()
        self._unsynced_acks = 0

    def _new_segment(self, number: int) -> None:
        segment = ActiveSegment(self.directory, number, self._ops, create=True)
        try:
            segment.append(rec.encode(self._index.counters.meta()), sync=True)
            fsync_dir(self.directory)
            fd = _open_read(segment.path)
        except BaseException:
            segment.close()
            try:
                (self.directory / segment_name(number)).unlink()
            except OSError:
                pass  # an empty or torn segment is harmless at open
            raise
        self._active = segment
        self._fds[number] = fd
        self._sizes[number] = segment.size
        self._index.apply(self._index.counters.meta(), number, 0, segment.size)

    def _compact(self) -> None:
        """Delete, oldest first, segments with nothing live; copy the few live records forward.

        Only the oldest segment ever goes, so an ack can never outlive the older
        segment holding the event it acknowledges: no acked event comes back.
        """
        active = self._active
        assert active is not None
        for _ in range(len(self._sizes) - 1):
            oldest = min(self._sizes)
            if oldest == active.number:
                return
            live_count = self._index.live.get(oldest, [0, 0])[0]
            total = sum(self._sizes.values())
            if live_count and total <= 2 * self._index.live_bytes() + 2 * self._segment_bytes:
                return
            try:
                if live_count:
                    self._copy_forward(oldest)
                self._delete_segment(oldest)
            except (OSError, JournalError) as exc:
                log.error("journal compaction stopped; will retry at the next segment",
                          segment=oldest, error=str(exc))
                return

    def _copy_forward(self, number: int) -> None:
        index = self._index
        items = [i for i in index.pending.values() if i.segment == number]
        items += [i for i in index.dead.values() if i.segment == number]
        records = [self._record(item) for item in items]
        records = [r._replace(flags=r.flags | rec.COPY) for r in records]
        self._commit(records, sync=True, may_roll=False)
        log.info("journal compaction copied live records forward", segment=number,
                 records=len(records))

    def _delete_segment(self, number: int) -> None:
        fd = self._fds.pop(number, None)
        if fd is not None:
            os.close(fd)
        (self.directory / segment_name(number)).unlink()
        fsync_dir(self.directory)
        self._sizes.pop(number, None)
        self._index.live.pop(number, None)
        log.debug("journal segment deleted", segment=number)

    def _sync_acks(self) -> None:
        assert self._active is not None
        try:
            self._active.sync()
        except OSError as exc:
            raise _write_error(exc, self.directory) from exc
        self._unsynced_acks = 0

    def _ack_sync_due(self) -> None:
        if self._unsynced_acks and self._clock() - self._unsynced_since >= ACK_SYNC_S:
            self._sync_acks()

    # -- bounds ----------------------------------------------------------------------------

    def _expiry_records(self, now: float) -> list[Rec]:
        cutoff = now - self.config.max_age_s
        records: list[Rec] = []
        heads = (next(iter(queue.values())) for queue in self._index.routes.values())
        if all(head.at >= cutoff for head in heads):
            return records  # the common case, without merging the routes
        for item in self._oldest_first(set()):
            if item.at >= cutoff:
                break  # appended_at rises with seq unless the wall clock was set back
            self._add_dead(records, item, 0, "", "expired", now, rec.EXPIRED)
        if records:
            log.error("events older than journal.max_age_s moved to dead letters",
                      count=len(records), max_age_s=self.config.max_age_s)
        return records

    def _expire_now(self) -> None:
        records = self._expiry_records(self._wall())
        if records:
            self._commit(records + self._drop_records(records), sync=True)

    def _drop_records(self, records: list[Rec]) -> list[Rec]:
        """Drops of the oldest dead letters so the store stays within max_dead_letters."""
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
        tail = {"e": self._tail(item)["e"], "status": int(status),
                "body": str(body)[:BODY_MAX], "reason": reason, "when": now}
        records.append(rec.make(rec.DEAD, id=item.event_id, route=item.route,
                                seq=self._next_seq(records), at=item.at, flags=flags,
                                tail=tail))

    def _next_seq(self, records: list[Rec]) -> int:
        """The seq after those already handed out in this batch of records."""
        seqs = [r.seq for r in records if r.kind in rec.DEFINING]
        return max(seqs) + 1 if seqs else self._index.counters.next_seq

    def _oldest_first(self, skip: set[str]) -> Iterator[Item]:
        merged = heapq.merge(*(q.values() for q in self._index.routes.values()),
                             key=lambda item: item.seq)
        return (item for item in merged if item.event_id not in skip)

    # -- reading ---------------------------------------------------------------------------

    def _record(self, item: Item) -> Rec:
        fd = self._fds.get(item.segment)
        try:
            if fd is None:
                raise OSError(errno.ENOENT, "segment not open", segment_name(item.segment))
            data = os.pread(fd, item.size, item.offset)
        except OSError as exc:
            raise JournalError(f"journal read failed: {exc}",
                               fix=f"check the filesystem holding {self.directory}") from exc
        found = rec.decode_at(data, 0)
        if found is None or found[0].id != item.event_id:
            raise JournalError(
                f"journal record changed on disk since it was read ({segment_name(item.segment)}"
                f" at {item.offset})",
                fix="restart the agent: opening moves the damaged part aside")
        return found[0]

    def _tail(self, item: Item) -> dict[str, Any]:
        """The JSON tail of an item's defining record, which always holds the event as "e"."""
        record = self._record(item)
        try:
            data = record.data()
            if not isinstance(data.get("e"), dict):
                raise TypeError("no event in the record")
        except (ValueError, TypeError) as exc:
            raise JournalError(f"journal record for {item.event_id} unreadable: {exc}",
                               fix="requeue or remove it; report this as a bug") from exc
        return data

    def _event(self, item: Item, data: dict[str, Any] | None = None) -> ProductEvent:
        data = self._tail(item) if data is None else data
        try:
            return ProductEvent.from_dict(data["e"])
        except (KeyError, TypeError, ValueError) as exc:
            raise JournalError(f"journal record for {item.event_id} holds no valid event: "
                               f"{exc!r}", fix="report this as a bug") from exc

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
        if self._active is not None:
            self._active.close()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the file releases the flock
            self._lock_fd = None


# -- helpers -------------------------------------------------------------------------------


def _open_read(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def _write_error(exc: OSError, directory: Path) -> JournalError:
    if exc.errno == errno.ENOSPC:
        return JournalError(f"journal write failed: no space left on the device holding "
                            f"{directory}", fix="free some space; the event is retried")
    if exc.errno == errno.EDQUOT:
        return JournalError(f"journal write failed: disk quota exceeded for {directory}",
                            fix="raise the quota or free some space")
    return JournalError(f"journal write failed: {exc.strerror or exc}",
                        fix="check the SD card or disk (dmesg) and the state directory")


_EVENT_FIELDS = tuple(f.name for f in dataclasses.fields(ProductEvent))


def _event_dict(event: ProductEvent) -> dict[str, Any]:
    """``event.to_dict()`` without asdict's deep copy: every field is a plain value."""
    return {name: getattr(event, name) for name in _EVENT_FIELDS}


def _take(items: Iterable[Any], n: int) -> Iterator[Any]:
    for count, item in enumerate(items):
        if count >= n:
            return
        yield item


def _chain(first: Iterable[str], second: Iterable[str]) -> Iterator[str]:
    yield from first
    yield from second
