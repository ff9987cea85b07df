"""Journal segment files: naming, the append-only active segment, reads, and crash-safe repair.

Segments are ``seg-NNNNNNNN.log`` in the journal directory, replayed in number
order. Only the highest-numbered one is ever appended to. A damaged segment is
repaired by writing its intact records to ``<name>.repair`` (fsynced), moving
the original aside with :func:`agent.fsutil.move_aside`, then renaming the
repair into place; :func:`finish_interrupted_repairs` completes or discards a
repair a crash interrupted, so every step is safe to die in. Of the segments
moved aside (``<name>.damaged.N``, ``<name>.unreadable.N``) only the
``KEEP_ASIDE`` newest are kept (:func:`prune_aside`), so repeated damage cannot
fill the card.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from pathlib import Path

import structlog

from agent.fsutil import fsync_dir, move_aside

log = structlog.get_logger(__name__)

_SEGMENT = re.compile(r"^seg-(\d{8})\.log$")
_REPAIR = re.compile(r"^(seg-\d{8}\.log)\.repair$")
_ASIDE = re.compile(r"^seg-(\d{8})\.log\.(?:damaged|unreadable)\.(\d+)$")
REPAIR_SUFFIX = ".repair"
KEEP_ASIDE = 10
# Zeroed ahead of the appends: one file-size change per this many bytes, not per event.
PREALLOCATE = 256 << 10


def segment_name(number: int) -> str:
    return f"seg-{number:08d}.log"


def list_segments(directory: Path) -> list[int]:
    numbers = []
    for name in os.listdir(directory):
        match = _SEGMENT.match(name)
        if match:
            numbers.append(int(match.group(1)))
    return sorted(numbers)


class FileOps:
    """The narrowest seam under the journal: the three calls that put bytes on disk.

    Tests substitute a subclass that fails like a full or broken disk.
    """

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        return os.pwrite(fd, data, offset)

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)

    def truncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)


def finish_interrupted_repairs(directory: Path) -> None:
    """Complete or discard a repair that a crash interrupted.

    With the original still in place the repair file may be partial: it goes.
    Without it, the original was already moved aside after the repair file was
    fsynced, so the repair file is whole and takes its place.
    """
    changed = False
    for name in os.listdir(directory):
        match = _REPAIR.match(name)
        if not match:
            continue
        repair = directory / name
        target = directory / match.group(1)
        if target.exists():
            repair.unlink()
        else:
            os.replace(repair, target)
        changed = True
    if changed:
        fsync_dir(directory)


def prune_aside(directory: Path, keep: int = KEEP_ASIDE) -> list[str]:
    """Delete all but the ``keep`` newest moved-aside segments; return the names deleted.

    Newest means the highest segment number (segments are numbered as written),
    then the highest move-aside count. A failure to delete is logged, not raised.
    """
    found = []
    for name in os.listdir(directory):
        match = _ASIDE.match(name)
        if match:
            found.append((int(match.group(1)), int(match.group(2)), name))
    found.sort(reverse=True)
    deleted = []
    for _, _, name in found[max(0, keep):]:
        path = directory / name
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as exc:
            log.error("could not delete an old moved-aside journal segment", file=name,
                      error=exc.strerror or str(exc))
            continue
        deleted.append(name)
    if deleted:
        log.warning("old moved-aside journal segments deleted", files=deleted, kept=keep)
        with contextlib.suppress(OSError):  # not durable yet is harmless: deleted again
            fsync_dir(directory)
    return deleted


def read_whole(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def replace_damaged(directory: Path, number: int, intact: bytes) -> Path:
    """Swap a damaged segment for its intact records; return where the original went."""
    name = segment_name(number)
    repair = directory / (name + REPAIR_SUFFIX)
    fd = os.open(repair, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(intact)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            repair.unlink()
        raise
    os.close(fd)
    aside = move_aside(directory / name, "damaged")
    os.replace(repair, directory / name)
    fsync_dir(directory)
    return aside


class ActiveSegment:
    """The segment being appended to, preallocated in zeroed chunks.

    Records are written with ``pwrite`` at the logical end (``size``) into space
    zeroed ahead of time, ``PREALLOCATE`` bytes at a go, so the ``fdatasync`` after
    an append flushes the data block alone: no file-size change, no filesystem
    journal commit. That makes it cheaper, and on an SD card it spares the flash
    a metadata write per event. A zeroed tail reads as free space, never as
    damage. Near a full disk the chunk is skipped and the record written alone.
    Every failed write is cut back to the last good size (which also drops the
    preallocation; the next append zeroes a new chunk).
    """

    def __init__(self, directory: Path, number: int, ops: FileOps, *, create: bool,
                 size: int | None = None, chunk: int = PREALLOCATE) -> None:
        self.directory = directory
        self.number = number
        self.path = directory / segment_name(number)
        self._ops = ops
        self._chunk = max(1, chunk)
        flags = os.O_RDWR | os.O_CLOEXEC
        if create:
            flags |= os.O_CREAT | os.O_TRUNC
        self.fd = os.open(self.path, flags, 0o600)
        self.allocated = os.fstat(self.fd).st_size
        # The logical end: where the next record goes. Opening passes the end of the
        # data it found; what lies beyond it is zeroes.
        self.size = self.allocated if size is None else min(size, self.allocated)
        # Set when a failed write could not be cut back: the next write tries again first.
        self._torn = False

    def append(self, data: bytes, *, sync: bool) -> int:
        """Write ``data`` at the logical end and return its offset; on OSError nothing is left."""
        if self._torn:
            self._cut_back()
        offset = self.size
        try:
            if offset + len(data) > self.allocated:
                self._preallocate(offset + len(data))
            self._write_all(data, offset)
            if sync:
                self._ops.fdatasync(self.fd)
        except OSError:
            self._torn = True
            try:
                self._cut_back()
            except OSError:
                pass  # retried before the next write
            raise
        self.size = offset + len(data)
        self.allocated = max(self.allocated, self.size)
        return offset

    def _preallocate(self, needed: int) -> None:
        target = -(-needed // self._chunk) * self._chunk  # rounded up to whole chunks
        try:
            self._write_all(bytes(target - self.allocated), self.allocated)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            self._ops.truncate(self.fd, self.size)  # no room for a chunk: the record alone
            self.allocated = self.size
            return
        self.allocated = target

    def _write_all(self, data: bytes, offset: int) -> None:
        written = self._ops.pwrite(self.fd, data, offset)
        if written == len(data):
            return  # the usual case: one whole write
        if written <= 0:  # a regular file does not do this; never loop on it
            raise OSError(errno.EIO, "write made no progress")
        view = memoryview(data)[written:]
        offset += written
        while view:
            written = self._ops.pwrite(self.fd, view, offset)
            if written <= 0:  # a regular file does not do this; never loop on it
                raise OSError(errno.EIO, "write made no progress")
            view = view[written:]
            offset += written

    def sync(self) -> None:
        self._ops.fdatasync(self.fd)

    def trim(self) -> None:
        """Drop the zeroed space past the logical end (when the segment is finished)."""
        if self.allocated > self.size:
            self._ops.truncate(self.fd, self.size)
            self.allocated = self.size

    def _cut_back(self) -> None:
        self._ops.truncate(self.fd, self.size)
        self.allocated = self.size
        self._torn = False

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
