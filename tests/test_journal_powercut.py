"""The power-cut promise, simulated: whatever was not fdatasynced may vanish or be torn.

The file-operations seam records each segment's size at its last fdatasync.
A "power cut" then cuts every segment back to a random point between that
size and its current one, and sometimes zeroes part of the unsynced tail
(pages written out of order). After reopening, every event whose append had
returned must be pending unless it was acked, and at most ACK_SYNC_EVERY - 1
acked events may come back (to be sent again; the backend drops repeats).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from journal_support import Clock, event, open_journal, pending_ids, segments

from agent.delivery.journal import ACK_SYNC_EVERY
from agent.delivery.journal_segments import FileOps


class RecordingOps(FileOps):
    """Remembers, per file, how far records were written and how far that was synced."""

    def __init__(self) -> None:
        self.written: dict[int, int] = {}  # inode -> end of the records written
        self.synced: dict[int, int] = {}  # inode -> that end at the last fdatasync

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        done = super().pwrite(fd, data, offset)
        if any(bytes(data[:done])):  # records; zeroes ahead of them are not data
            inode = os.fstat(fd).st_ino
            self.written[inode] = max(self.written.get(inode, 0), offset + done)
        return done

    def fdatasync(self, fd: int) -> None:
        super().fdatasync(fd)
        inode = os.fstat(fd).st_ino
        self.synced[inode] = self.written.get(inode, 0)


def _power_cut(source: Path, target: Path, ops: RecordingOps, rng: random.Random) -> None:
    """Copy the journal as a power cut would leave it on disk: unsynced tails cut or torn."""
    (target / "journal").mkdir(parents=True)
    for path in segments(source):
        data = bytearray(path.read_bytes())
        inode = path.stat().st_ino
        synced, written = ops.synced.get(inode), ops.written.get(inode, 0)
        if synced is not None and synced < written:  # never synced: written before this run
            keep = rng.randint(synced, written)
            del data[keep:]  # what follows, zeroes ahead included, may not have reached disk
            if rng.random() < 0.3 and keep > synced:
                start = rng.randint(synced, keep)
                end = rng.randint(start, keep)
                data[start:end] = bytes(end - start)
        (target / "journal" / path.name).write_bytes(bytes(data))


def test_power_cuts_lose_no_appended_event(tmp_path: Path) -> None:
    rng = random.Random(42)
    n = 0
    pending: list[str] = []
    resurrected_total = 0
    for cut in range(40):
        state = tmp_path / f"boot{cut}"
        ops = RecordingOps()
        j = open_journal(state, ops=ops, clock=Clock(0.0), segment_bytes=4096)
        current = pending_ids(j)
        assert set(pending) <= set(current)  # nothing appended was lost
        resurrected = set(current) - set(pending)
        assert len(resurrected) < ACK_SYNC_EVERY  # only acks since the last fdatasync
        resurrected_total += len(resurrected)
        pending = current
        for _ in range(rng.randint(1, 80)):
            if rng.random() < 0.55 or not pending:
                e = event(n, rng.choice(["basket", "pending"]))
                n += 1
                j.append(e)
                pending.append(e.event_id)
            else:
                j.ack(pending.pop(0))
        _power_cut(state, tmp_path / f"boot{cut + 1}", ops, rng)
        j.close()
    with open_journal(tmp_path / "boot40") as j:
        assert set(pending) <= set(pending_ids(j))
    assert n > 500 and resurrected_total > 0  # acks really were lost and events came back
