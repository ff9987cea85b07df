"""A full or failing disk: a clean JournalError, nothing corrupted, and recovery afterwards.

The first test fills a real, tiny tmpfs (when this machine lets us mount one);
the others inject failures at the narrowest seam, the three calls that put
bytes on disk (write, fdatasync, ftruncate), to reach every branch.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from journal_support import ENOSPC, FlakyOps, event, open_journal, pending_ids, segments
from structlog.testing import capture_logs

from agent.delivery import journal_records as rec
from agent.errors import JournalError


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k,mode=0700", "tmpfs",
                           str(mount_point)], check=False, capture_output=True, timeout=30)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); the seam tests below cover it")
    try:
        yield mount_point
    finally:
        # lazily: a failed test may still hold files open on it
        subprocess.run(["umount", "-l", str(mount_point)], check=False, capture_output=True,
                       timeout=30)


def _fill(mount_point: Path) -> Path:
    """Take every block left on the filesystem; return the file holding them."""
    filler = mount_point / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\xff" * 1024)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def test_a_really_full_filesystem(tiny_fs: Path) -> None:
    state = tiny_fs / "state"
    j = open_journal(state, segment_bytes=16384)
    for n in range(20):
        j.append(event(n))
    filler = _fill(tiny_fs)
    before = _segment_bytes(state)
    failures = 0
    for n in range(20, 60):
        try:
            j.append(event(n))
        except JournalError as exc:
            assert "no space left" in str(exc)
            failures += 1
    assert failures > 0
    confirmed = pending_ids(j)
    j.close()
    with open_journal(state, read_only=True) as reader:  # nothing torn
        assert pending_ids(reader) == confirmed
        assert reader.stats().lost_records == 0
    filler.unlink()
    j = open_journal(state, segment_bytes=16384)
    assert j.stats().lost_records == 0
    j.append(event(999))  # space is back
    assert pending_ids(j) == confirmed + [event(999).event_id]
    j.close()
    assert _segment_bytes(state).startswith(before)  # nothing written was disturbed


def _prepared(tmp_path: Path, **kwargs):
    ops = FlakyOps()
    j = open_journal(tmp_path, ops=ops, **kwargs)
    for n in range(3):
        j.append(event(n))
    return j, ops


def _segment_bytes(tmp_path: Path) -> bytes:
    """The data in the segments, without the zeroes preallocated past it."""
    return b"".join(p.read_bytes()[:rec.scan(p.read_bytes()).data_end]
                    for p in segments(tmp_path))


@pytest.mark.parametrize("short_first", [False, True])
def test_enospc_on_write_leaves_nothing_behind(tmp_path: Path, short_first: bool) -> None:
    j, ops = _prepared(tmp_path)
    before = _segment_bytes(tmp_path)
    ops.fail_write, ops.short_first = ENOSPC, short_first
    with pytest.raises(JournalError, match="no space left") as info:
        j.append(event(3))
    assert isinstance(info.value.__cause__, OSError)
    assert _segment_bytes(tmp_path) == before  # the half-written record was cut back
    assert pending_ids(j) == [event(n).event_id for n in range(3)]
    ops.fail_write = None
    j.append(event(3))
    j.close()
    with open_journal(tmp_path) as again:
        assert pending_ids(again) == [event(n).event_id for n in range(4)]
        assert again.stats().lost_records == 0


def test_eio_on_fdatasync_is_a_failed_append(tmp_path: Path) -> None:
    j, ops = _prepared(tmp_path)
    before = _segment_bytes(tmp_path)
    ops.fail_sync = errno.EIO
    with pytest.raises(JournalError, match="Input/output error") as info:
        j.append(event(3))
    assert "check the SD card" in str(info.value)
    assert _segment_bytes(tmp_path) == before
    assert event(3).event_id not in pending_ids(j)
    ops.fail_sync = None
    j.append(event(3))
    assert pending_ids(j)[-1] == event(3).event_id
    j.close()


def test_a_failed_cut_back_is_retried_before_the_next_write(tmp_path: Path) -> None:
    j, ops = _prepared(tmp_path)
    before = _segment_bytes(tmp_path)
    ops.fail_write, ops.short_first, ops.fail_truncate = ENOSPC, True, errno.EIO
    with pytest.raises(JournalError):
        j.append(event(3))
    assert len(_segment_bytes(tmp_path)) > len(before)  # half a record is stuck on disk
    ops.fail_write = ops.fail_truncate = None
    j.append(event(4))
    assert _segment_bytes(tmp_path).startswith(before)
    j.close()
    with open_journal(tmp_path) as again:
        assert pending_ids(again) == [event(n).event_id for n in (0, 1, 2, 4)]
        assert again.stats().lost_records == 0


def test_a_crash_before_the_cut_back_leaves_a_torn_tail_open_repairs(tmp_path: Path) -> None:
    j, ops = _prepared(tmp_path)
    ops.fail_write, ops.short_first, ops.fail_truncate = ENOSPC, True, errno.EIO
    with pytest.raises(JournalError):
        j.append(event(3))
    j.close()  # as if the process died here: the torn half record stays
    with open_journal(tmp_path) as again:
        assert pending_ids(again) == [event(n).event_id for n in range(3)]
        assert again.stats().lost_records == 1  # the unconfirmed record, moved aside
        again.append(event(3))
    assert len(list((tmp_path / "journal").glob("*.damaged.*"))) == 1


def test_failing_ack_keeps_the_event_pending(tmp_path: Path) -> None:
    j, ops = _prepared(tmp_path)
    ops.fail_write = errno.EIO
    with pytest.raises(JournalError):
        j.ack(event(0).event_id)
    assert pending_ids(j)[0] == event(0).event_id
    ops.fail_write = None
    j.ack(event(0).event_id)
    assert pending_ids(j)[0] == event(1).event_id
    j.close()


def test_failing_dead_letter_and_requeue(tmp_path: Path) -> None:
    j, ops = _prepared(tmp_path)
    ops.fail_write = ENOSPC
    with pytest.raises(JournalError):
        j.dead_letter(event(0).event_id, 422, "", "refused")
    assert j.dead_letters() == []
    ops.fail_write = None
    j.dead_letter(event(0).event_id, 422, "", "refused")
    ops.fail_sync = errno.EIO
    with pytest.raises(JournalError):
        j.requeue()
    assert len(j.dead_letters()) == 1
    ops.fail_sync = None
    assert j.requeue() == 1
    j.close()


def test_enospc_while_starting_a_new_segment(tmp_path: Path) -> None:
    ops = FlakyOps()
    j = open_journal(tmp_path, ops=ops, segment_bytes=1024)
    n = 0
    while len(segments(tmp_path)) == 1:
        j.append(event(n))
        n += 1
    files = segments(tmp_path)
    # Fill the current segment to its edge so the next append must roll.
    last = files[-1]
    while last.stat().st_size + 400 < 1024:
        j.append(event(n))
        n += 1
    count = len(segments(tmp_path))
    ops.fail_write = ENOSPC
    with pytest.raises(JournalError, match="no space left"):
        j.append(event(n))
    assert len(segments(tmp_path)) == count  # the half-made segment was removed
    ops.fail_write = None
    j.append(event(n))
    expected = [event(i).event_id for i in range(n + 1)]
    assert pending_ids(j) == expected
    j.close()
    with open_journal(tmp_path, segment_bytes=1024) as again:
        assert pending_ids(again) == expected and again.stats().lost_records == 0


def test_failing_ack_sync_on_close_still_releases_the_lock(tmp_path: Path) -> None:
    j, ops = _prepared(tmp_path)
    j.ack(event(0).event_id)
    ops.fail_sync = errno.EIO
    with pytest.raises(JournalError):
        j.close()
    with open_journal(tmp_path) as again:  # no JournalBusyError
        assert event(0).event_id not in pending_ids(again)  # the write itself had happened


def test_a_damaged_journal_on_a_full_filesystem_opens_and_repairs_later(tiny_fs: Path) -> None:
    state = tiny_fs / "state"
    with open_journal(state) as j:
        for n in range(10):
            j.append(event(n))
    [segment] = segments(state)
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0x10  # damage one record in the middle
    segment.write_bytes(bytes(data))
    filler = _fill(tiny_fs)
    j = open_journal(state)  # no room to move the damage aside: opens anyway
    assert len(pending_ids(j)) == 9 and j.stats().lost_records == 1
    assert list((state / "journal").glob("*.damaged.*")) == []
    assert list((state / "journal").glob("*.repair")) == []
    with pytest.raises(JournalError, match="no space left"):  # the slack in the last page
        for n in range(10, 60):                               # takes a few, then no more
            j.append(event(n))
    kept = pending_ids(j)
    j.close()
    filler.unlink()
    with open_journal(state) as j:  # appended past the damage: all found again
        assert pending_ids(j) == kept
        j.append(event(99))
    assert len(list((state / "journal").glob("*.damaged.*"))) == 1
    with open_journal(state) as j:  # repaired for good
        assert pending_ids(j) == kept + [event(99).event_id]
        assert j.stats().lost_records == 1  # counted for good once, by the repairing open


def test_opening_a_new_journal_on_a_full_disk(tmp_path: Path) -> None:
    ops = FlakyOps()
    ops.fail_write = ENOSPC
    j = open_journal(tmp_path, ops=ops)  # comes up; only appends fail
    assert j.stats().pending == 0 and segments(tmp_path) == []
    with pytest.raises(JournalError, match="no space left"):
        j.append(event(0))
    ops.fail_write = None
    j.append(event(0))
    j.close()
    with open_journal(tmp_path) as again:
        assert pending_ids(again) == [event(0).event_id]


def test_a_segment_that_cannot_be_started_does_not_stop_appends(tmp_path: Path) -> None:
    ops = FlakyOps()
    ops.fail_if = lambda data: data[10] == rec.META  # the kind byte of a new segment's header
    j = open_journal(tmp_path, ops=ops, segment_bytes=1024)  # opens without a segment
    assert segments(tmp_path) == []
    ops.fail_if = None
    j.append(event(0))  # creates the first segment
    ops.fail_if = lambda data: data[10] == rec.META
    with capture_logs() as logs:
        for n in range(1, 12):
            j.append(event(n))
    assert len(segments(tmp_path)) == 1  # it could not roll ...
    assert segments(tmp_path)[0].stat().st_size > 1024  # ... so the current one took them
    assert any(e["event"].startswith("cannot start a new journal segment") for e in logs)
    ops.fail_if = None
    j.append(event(12))
    assert len(segments(tmp_path)) == 2
    j.close()
    with open_journal(tmp_path, segment_bytes=1024) as again:
        assert pending_ids(again) == [event(n).event_id for n in range(13)]
