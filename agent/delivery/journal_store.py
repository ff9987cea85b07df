"""The journal's storage: segment files, one active, read back by position; compaction.

:class:`SegmentStore` writes batches of records to the active segment (one
``write``, optionally one ``fdatasync``), applies them to the index, starts a
new segment past ``segment_bytes`` and then compacts: the oldest segment goes
once nothing in it is live, after its few live records are copied forward
when that frees space. Only the oldest segment is ever deleted, so an ack can
never outlive the older segment holding the event it acknowledges: no acked
event comes back. Policy (bounds, ack cadence, the public interface) lives in
:mod:`agent.delivery.journal`.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import structlog

from agent.basket.event import ProductEvent
from agent.delivery import journal_records as rec
from agent.delivery.journal_index import Index, Item
from agent.delivery.journal_load import Loaded
from agent.delivery.journal_records import Rec
from agent.delivery.journal_segments import PREALLOCATE, ActiveSegment, FileOps, segment_name
from agent.errors import JournalError
from agent.fsutil import fsync_dir

log = structlog.get_logger(__name__)


class SegmentStore:
    def __init__(self, directory: Path, loaded: Loaded, ops: FileOps,
                 segment_bytes: int) -> None:
        self.directory = directory
        self.index: Index = loaded.index
        self._fds = loaded.fds
        self._sizes = loaded.sizes
        self._ops = ops
        self._segment_bytes = segment_bytes
        # Zero ahead no further than a segment reaches before the next one starts.
        self._chunk = min(PREALLOCATE, segment_bytes)
        self._active: ActiveSegment | None = None
        # New segments are numbered past every segment listed at open, read or not.
        self._highest = loaded.highest
        self.unsynced = 0  # batches written since the last fdatasync

    def start(self, lost_now: int) -> None:
        """Take the last segment for appends and record what opening found.

        A full disk does not stop the open: the journal comes up readable, appends
        raise JournalError until there is room (the first one creates the segment
        if that is what failed), and the loss count is kept in memory meanwhile.
        """
        numbers = sorted(self._sizes)
        if numbers and numbers[-1] >= self._highest:
            # Appends go on in the last segment; when it cannot be written (or a later
            # one was unreadable) a new segment takes them.
            try:
                self._active = ActiveSegment(self.directory, numbers[-1], self._ops,
                                             create=False, size=self._sizes[numbers[-1]],
                                             chunk=self._chunk)
            except OSError as exc:
                log.error("cannot append to the last journal segment; starting a new one",
                          segment=segment_name(numbers[-1]), error=exc.strerror or str(exc))
        try:
            if self._active is None:
                self._ensure_active()
            elif self._active.size == 0:
                self.commit([self.index.counters.meta()], sync=True, may_roll=False)
            if lost_now:
                self.commit([rec.make(rec.LOST, tail={"n": lost_now})], sync=True,
                             may_roll=False)
                lost_now = 0
        except JournalError as exc:
            log.error("journal not writable at open; appends fail until it is",
                      error=str(exc))
            self.index.counters.lost += lost_now

    # -- writing ---------------------------------------------------------------------------

    def commit(self, records: list[Rec], *, sync: bool, may_roll: bool = True) -> None:
        """Write the records in one go (synced when asked) and apply them to the index."""
        try:
            frames = [rec.encode(r) for r in records]
        except ValueError as exc:  # an absurd event (a 64 KiB id, a 1 MiB name): not a disk fault
            raise JournalError(f"journal record cannot be written: {exc}",
                               fix="report this as a bug; the event is not journaled") from exc
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        number, offset, rolled = self._write(data, sync, may_roll)
        for record, framed in zip(records, frames):
            self.index.apply(record, number, offset, len(framed))
            offset += len(framed)
        if rolled:
            self._compact()

    def append_event(self, event_id: str, route: str, at: float, flags: int,
                     tail: bytes) -> Item:
        """Write, sync and index a new event record alone: ``commit`` of that one record
        (the same bytes and index state) without building it first. The id must be
        neither pending nor dead; the record takes the next seq. Returns its item."""
        index = self.index
        seq = index.counters.next_seq
        try:
            data = rec.frame(rec.EVENT, flags, seq, at, event_id, route, tail)
        except ValueError as exc:
            raise JournalError(f"journal record cannot be written: {exc}",
                               fix="report this as a bug; the event is not journaled") from exc
        number, offset, rolled = self._write(data, True, True)
        item = index.add_event(event_id, route, seq, at, number, offset, len(data),
                               not flags & rec.UNSYNCED)
        if rolled:
            self._compact()
        return item

    def _write(self, data: bytes, sync: bool, may_roll: bool) -> tuple[int, int, bool]:
        """Write ``data`` to the active segment (starting a new one past segment_bytes when
        allowed); return (segment, offset, whether a new segment was started)."""
        active = self._active
        if active is None:
            active = self._ensure_active()
        rolled = False
        if may_roll and active.size > 0 and active.size + len(data) > self._segment_bytes:
            try:
                self._roll()
            except JournalError as exc:
                # Not fatal: the current segment takes the record (or fails on its own).
                log.error("cannot start a new journal segment; appending to the current one",
                          segment=active.number, error=str(exc))
            else:
                rolled = True
            active = self._ensure_active()
        try:
            offset = active.append(data, sync=sync)
        except OSError as exc:
            raise _write_error(exc, self.directory) from exc
        self._sizes[active.number] = active.size
        self.unsynced = 0 if sync else self.unsynced + 1
        return active.number, offset, rolled

    def _ensure_active(self) -> ActiveSegment:
        if self._active is None:
            try:
                self._new_segment(max(max(self._sizes, default=0), self._highest) + 1)
            except OSError as exc:
                raise _write_error(exc, self.directory) from exc
        assert self._active is not None
        return self._active

    def _roll(self) -> None:
        active = self._active
        assert active is not None
        try:
            active.trim()
            active.sync()
            self._new_segment(active.number + 1)
        except OSError as exc:
            raise _write_error(exc, self.directory) from exc
        active.close()
        self.unsynced = 0

    def _new_segment(self, number: int) -> None:
        segment = ActiveSegment(self.directory, number, self._ops, create=True,
                                chunk=self._chunk)
        try:
            segment.append(rec.encode(self.index.counters.meta()), sync=True)
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
        self._highest = max(self._highest, number)
        self._fds[number] = fd
        self._sizes[number] = segment.size
        self.index.apply(self.index.counters.meta(), number, 0, segment.size)

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
            live_count = self.index.live.get(oldest, [0, 0])[0]
            total = sum(self._sizes.values())
            if live_count and total <= 2 * self.index.live_bytes() + 2 * self._segment_bytes:
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
        index = self.index
        items = [i for i in index.pending.values() if i.segment == number]
        items += [i for i in index.dead.values() if i.segment == number]
        records = [self.record(item) for item in items]
        records = [r._replace(flags=r.flags | rec.COPY) for r in records]
        self.commit(records, sync=True, may_roll=False)
        log.info("journal compaction copied live records forward", segment=number,
                 records=len(records))

    def _delete_segment(self, number: int) -> None:
        fd = self._fds.pop(number, None)
        if fd is not None:
            os.close(fd)
        (self.directory / segment_name(number)).unlink(missing_ok=True)
        self._sizes.pop(number, None)
        self.index.live.pop(number, None)
        fsync_dir(self.directory)
        log.debug("journal segment deleted", segment=number)

    def sync(self) -> None:
        if self._active is None or not self.unsynced:
            return
        try:
            self._active.sync()
        except OSError as exc:
            raise _write_error(exc, self.directory) from exc
        self.unsynced = 0

    def close(self) -> None:
        if self._active is not None:
            self._active.close()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def record(self, item: Item) -> Rec:
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

    def tail(self, item: Item) -> dict[str, Any]:
        """The JSON tail of an item's defining record, which always holds the event as "e"."""
        record = self.record(item)
        try:
            data = record.data()
            if not isinstance(data.get("e"), dict):
                raise TypeError("no event in the record")
        except (ValueError, TypeError) as exc:
            raise JournalError(f"journal record for {item.event_id} unreadable: {exc}",
                               fix="requeue or remove it; report this as a bug") from exc
        return data

    def event(self, item: Item, data: dict[str, Any] | None = None) -> ProductEvent:
        data = self.tail(item) if data is None else data
        try:
            return ProductEvent.from_dict(data["e"])
        except (KeyError, TypeError, ValueError) as exc:
            raise JournalError(f"journal record for {item.event_id} holds no valid event: "
                               f"{exc!r}", fix="report this as a bug") from exc


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
