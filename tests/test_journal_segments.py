"""Segment files: naming, the append-only active segment, and repairs a crash interrupted."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from journal_support import FlakyOps
from structlog.testing import capture_logs

from agent.delivery.journal_segments import (
    ActiveSegment,
    FileOps,
    finish_interrupted_repairs,
    list_segments,
    prune_aside,
    replace_damaged,
    segment_name,
)


def test_names_and_listing(tmp_path: Path) -> None:
    assert segment_name(7) == "seg-00000007.log"
    for name in ("seg-00000003.log", "seg-00000001.log", "seg-00000002.log.damaged.0",
                 "seg-00000004.log.repair", "seg-1.log", "LOCK"):
        (tmp_path / name).write_bytes(b"")
    assert list_segments(tmp_path) == [1, 3]


def test_active_segment_appends_and_reports_offsets(tmp_path: Path) -> None:
    segment = ActiveSegment(tmp_path, 1, FileOps(), create=True, chunk=1)
    assert segment.append(b"abc", sync=True) == 0
    assert segment.append(b"defg", sync=False) == 3
    segment.sync()
    segment.close()
    segment.close()  # idempotent
    assert (tmp_path / segment_name(1)).read_bytes() == b"abcdefg"
    again = ActiveSegment(tmp_path, 1, FileOps(), create=False, chunk=1)
    assert again.size == 7
    again.close()


def test_space_is_zeroed_ahead_in_chunks_and_trimmed(tmp_path: Path) -> None:
    ops = FlakyOps()
    segment = ActiveSegment(tmp_path, 1, ops, create=True, chunk=16)
    path = tmp_path / segment_name(1)
    segment.append(b"abcd", sync=True)
    assert path.read_bytes() == b"abcd" + bytes(12)  # one chunk, zeroes past the data
    writes = ops.writes
    segment.append(b"efgh", sync=True)  # inside the chunk: the record alone is written
    assert ops.writes == writes + 1 and segment.allocated == 16
    segment.append(b"0123456789", sync=True)  # past it: the next chunk first
    assert path.stat().st_size == 32 and segment.size == 18
    segment.trim()
    assert path.read_bytes() == b"abcdefgh0123456789"
    segment.close()
    reopened = ActiveSegment(tmp_path, 1, ops, create=False, size=18, chunk=16)
    assert reopened.append(b"x", sync=False) == 18
    reopened.close()


def test_no_room_for_a_chunk_writes_the_record_alone(tmp_path: Path) -> None:
    class NoRoomForZeroes(FileOps):
        def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
            if not any(bytes(data)):
                raise OSError(errno.ENOSPC, "full")
            return super().pwrite(fd, data, offset)

    segment = ActiveSegment(tmp_path, 1, NoRoomForZeroes(), create=True, chunk=4096)
    segment.append(b"abc", sync=True)
    segment.close()
    assert (tmp_path / segment_name(1)).read_bytes() == b"abc"


def test_a_short_write_is_finished(tmp_path: Path) -> None:
    class Dribble(FileOps):
        def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
            return super().pwrite(fd, bytes(data[:2]), offset)

    segment = ActiveSegment(tmp_path, 1, Dribble(), create=True, chunk=1)
    segment.append(b"0123456789", sync=True)
    segment.close()
    assert (tmp_path / segment_name(1)).read_bytes() == b"0123456789"


def test_a_write_that_makes_no_progress_is_an_error_not_a_hang(tmp_path: Path) -> None:
    class Stuck(FileOps):
        def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
            return 0

    segment = ActiveSegment(tmp_path, 1, Stuck(), create=True)
    with pytest.raises(OSError) as info:
        segment.append(b"x", sync=False)
    assert info.value.errno == errno.EIO
    segment.close()


def test_failed_write_is_cut_back_and_a_failed_cut_back_retried(tmp_path: Path) -> None:
    ops = FlakyOps()
    segment = ActiveSegment(tmp_path, 1, ops, create=True, chunk=64)
    segment.append(b"good", sync=True)  # zeroes ahead to 64: the next write is the record
    ops.fail_write, ops.short_first, ops.fail_truncate = errno.ENOSPC, True, errno.EIO
    with pytest.raises(OSError):
        segment.append(b"0123456789", sync=True)
    path = tmp_path / segment_name(1)
    assert path.read_bytes().rstrip(b"\x00") == b"good01234"  # stuck: the cut back failed too
    ops.fail_write = ops.fail_truncate = None
    segment.append(b"next", sync=True)
    assert path.read_bytes().rstrip(b"\x00") == b"goodnext"
    segment.close()


def test_replace_damaged_keeps_the_original_aside(tmp_path: Path) -> None:
    original = tmp_path / segment_name(2)
    original.write_bytes(b"intact+garbage")
    aside = replace_damaged(tmp_path, 2, b"intact")
    assert original.read_bytes() == b"intact"
    assert aside.name == "seg-00000002.log.damaged.0" and aside.read_bytes() == b"intact+garbage"
    assert not (tmp_path / "seg-00000002.log.repair").exists()
    original.write_bytes(b"again+garbage")
    assert replace_damaged(tmp_path, 2, b"again").name == "seg-00000002.log.damaged.1"


def test_interrupted_repair_before_the_move_is_discarded(tmp_path: Path) -> None:
    original = tmp_path / segment_name(1)
    original.write_bytes(b"original")
    (tmp_path / "seg-00000001.log.repair").write_bytes(b"orig")  # maybe half written
    finish_interrupted_repairs(tmp_path)
    assert original.read_bytes() == b"original"
    assert not (tmp_path / "seg-00000001.log.repair").exists()


def test_interrupted_repair_after_the_move_is_completed(tmp_path: Path) -> None:
    (tmp_path / "seg-00000001.log.damaged.0").write_bytes(b"original+garbage")
    (tmp_path / "seg-00000001.log.repair").write_bytes(b"original")  # fsynced before the move
    finish_interrupted_repairs(tmp_path)
    assert (tmp_path / segment_name(1)).read_bytes() == b"original"
    assert list_segments(tmp_path) == [1]


def test_only_the_newest_moved_aside_segments_are_kept(tmp_path: Path) -> None:
    names = [f"seg-{n:08d}.log.damaged.0" for n in range(1, 9)]
    names += ["seg-00000009.log.unreadable.0", "seg-00000009.log.damaged.1",
              "seg-00000010.log.damaged.0"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "seg-00000002.log.unreadable.0").mkdir()  # an old directory, moved aside
    (tmp_path / "seg-00000002.log.unreadable.0" / "inside").write_bytes(b"x")
    for keep in ("seg-00000001.log", "seg-00000001.log.repair", "LOCK", "notes.damaged.0"):
        (tmp_path / keep).write_bytes(b"")
    with capture_logs() as logs:
        deleted = prune_aside(tmp_path, keep=9)
    assert sorted(deleted) == ["seg-00000001.log.damaged.0", "seg-00000002.log.damaged.0",
                               "seg-00000002.log.unreadable.0"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        set(names) - set(deleted) | {"seg-00000001.log", "seg-00000001.log.repair", "LOCK",
                                     "notes.damaged.0"})
    [entry] = [e for e in logs if e["event"] == "old moved-aside journal segments deleted"]
    assert sorted(entry["files"]) == sorted(deleted)
    assert prune_aside(tmp_path, keep=9) == []
