"""Opening the journal: the writer's lock, and the scan that rebuilds the index.

Damaged content never makes opening fail: every segment is scanned, intact
records are replayed, and (for the writer) a damaged segment is replaced by
its intact records while the original is moved aside. A segment that cannot be
read at all (an I/O error, a directory or other non-file under its name) is
moved aside whole by the writer, skipped by a reader, its records counted as
lost (estimated from its size) and logged at ERROR with its name: the service
must come up rather than restart forever. Only failures on the journal
directory itself (and a held lock) raise, naming the directory.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from agent.delivery import journal_records as rec
from agent.delivery.journal_index import Index
from agent.delivery.journal_segments import (
    finish_interrupted_repairs,
    list_segments,
    prune_aside,
    replace_damaged,
    segment_name,
)
from agent.errors import JournalBusyError, JournalError
from agent.fsutil import move_aside

log = structlog.get_logger(__name__)

LOCK_NAME = "LOCK"


@dataclass
class Loaded:
    """What opening found: the index, a read descriptor and size per segment, new losses."""

    index: Index = field(default_factory=Index)
    fds: dict[int, int] = field(default_factory=dict)
    sizes: dict[int, int] = field(default_factory=dict)
    lost_now: int = 0  # found and moved aside now: to be recorded in the journal
    lost_unmoved: int = 0  # found but left in place (read-only, full disk): counted, not recorded
    highest: int = 0  # the highest segment number listed, read or not: new segments go past it

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


def lock(directory: Path) -> int:
    """Create the journal directory and take its exclusive lock; the fd holds it."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise JournalError(f"cannot create the journal in {directory}: {exc.strerror}",
                           fix=_fix(exc, "check the state directory's owner and free space")
                           ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise JournalBusyError("another basketagent holds the journal: stop the service first",
                               fix="systemctl stop basketagent") from exc
    except OSError as exc:
        os.close(fd)
        raise JournalError(f"cannot lock the journal in {directory}: {exc.strerror}",
                           fix="check the state directory's filesystem") from exc
    return fd


def load(directory: Path, *, repair: bool,
         aside: Callable[[Path, str], Path] = move_aside) -> Loaded:
    """Scan every segment into a fresh index; with ``repair``, move damage aside.

    Without ``repair`` (a read-only look beside a running writer) a torn tail of
    the last segment is a write in progress, not a loss. ``aside`` moves an
    unreadable segment out of the way (the seam tests use to make that fail).
    """
    loaded = Loaded()
    try:
        if not stat.S_ISDIR(os.stat(directory).st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(directory))
    except FileNotFoundError:  # nothing journaled yet (read-only never creates it)
        loaded.index.finish_replay()
        return loaded
    except OSError as exc:  # unreadable is not empty: say so instead of showing nothing
        raise JournalError(f"cannot read the journal in {directory}: {exc.strerror or exc}",
                           fix=_fix(exc, "check the state directory")) from exc
    try:
        if repair:
            finish_interrupted_repairs(directory)
        numbers = list_segments(directory)
        loaded.highest = numbers[-1] if numbers else 0
        for position, number in enumerate(numbers):
            _load_segment(directory, number, position == len(numbers) - 1, repair, loaded,
                          aside)
        if repair:
            prune_aside(directory)
    except OSError as exc:
        loaded.close()
        raise JournalError(f"cannot read the journal in {directory}: {exc.strerror or exc}",
                           fix=_fix(exc, "check the filesystem holding the state directory")
                           ) from exc
    loaded.index.finish_replay()
    # After replay: a segment's meta record sets the counters absolutely.
    loaded.index.counters.lost += loaded.lost_unmoved
    return loaded


def _load_segment(directory: Path, number: int, last: bool, repair: bool,
                  loaded: Loaded, aside: Callable[[Path, str], Path]) -> None:
    path = directory / segment_name(number)
    try:
        fd, scan = _read_segment(directory, number, last, repair, loaded)
    except FileNotFoundError:
        return  # deleted by the running writer's compaction after we listed it
    except OSError as exc:
        _unreadable(path, exc, repair, loaded, aside)
        return
    loaded.fds[number] = fd
    loaded.sizes[number] = scan.data_end  # past it: zeroes ahead of the appends
    apply = loaded.index.apply
    for offset, size, record in scan.records:
        apply(record, number, offset, size)


def _read_segment(directory: Path, number: int, last: bool, repair: bool,
                  loaded: Loaded) -> tuple[int, rec.Scan]:
    """A read descriptor and the scan of one segment, damage repaired (or counted)."""
    path = directory / segment_name(number)
    # O_NONBLOCK: a FIFO under a segment's name must not hang the open.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        data = _read_fd(fd)
        scan = rec.scan(data, tails=False)
        if scan.damage and (repair or not (last and scan.torn_tail_only)):
            log.error("journal damage found: records lost", segment=path.name,
                      lost_records=scan.lost_records,
                      damaged_bytes=sum(d.end - d.start for d in scan.damage),
                      stretches=len(scan.damage), torn_tail=last and scan.torn_tail_only,
                      kept_records=len(scan.records))
            if repair:
                intact = b"".join(data[offset:offset + size] for offset, size, _ in scan.records)
                try:
                    moved = replace_damaged(directory, number, intact)
                except OSError as exc:
                    # Full disk: keep going on the intact records; the damage stays
                    # where it is (skipped by every scan) and is counted for good by
                    # the open that manages to move it aside.
                    log.error("could not move the damaged journal part aside; will retry "
                              "at the next open", segment=path.name, error=str(exc))
                    loaded.lost_unmoved += scan.lost_records
                else:
                    loaded.lost_now += scan.lost_records
                    log.error("damaged journal segment moved aside; intact records kept",
                              segment=path.name, moved_to=moved.name)
                    os.close(fd)
                    fd = -1
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                    scan = rec.scan(intact, tails=False)
            else:
                loaded.lost_unmoved += scan.lost_records
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise
    return fd, scan


def _unreadable(path: Path, exc: OSError, repair: bool, loaded: Loaded,
                aside: Callable[[Path, str], Path]) -> None:
    """A segment that cannot be read: moved aside (writer) or skipped (reader), counted."""
    lost = estimate_lost_records(path)
    error = exc.strerror or str(exc)
    if not repair:
        log.error("journal segment unreadable: skipped, its records not counted in",
                  segment=str(path), error=error, lost_records=lost)
        loaded.lost_unmoved += lost
        return
    try:
        moved = aside(path, "unreadable")
    except OSError as move_exc:
        log.error("journal segment unreadable and cannot be moved aside: skipped; will "
                  "retry at the next open", segment=str(path), error=error,
                  move_error=move_exc.strerror or str(move_exc), lost_records=lost)
        loaded.lost_unmoved += lost
        return
    log.error("journal segment unreadable: moved aside, its records lost",
              segment=str(path), moved_to=moved.name, error=error, lost_records=lost)
    loaded.lost_now += lost


def estimate_lost_records(path: Path) -> int:
    """How many records an unreadable segment held, from its size (at least 1)."""
    try:
        info = os.lstat(path)
    except OSError:
        return 1
    if not stat.S_ISREG(info.st_mode):
        return 1
    return max(1, round(info.st_size / rec.TYPICAL_RECORD))


def _fix(exc: OSError, otherwise: str) -> str:
    if isinstance(exc, PermissionError):
        return "run it as root or the basketagent user (sudo), or pass --state-dir"
    return otherwise


def _read_fd(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, max(size, 1 << 16))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
