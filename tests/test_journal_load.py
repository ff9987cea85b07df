"""Opening: the writer's lock, and loading a journal directory in every state it can be in."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.delivery import journal_records as rec
from agent.delivery.journal_load import estimate_lost_records, load, lock
from agent.delivery.journal_segments import KEEP_ASIDE
from agent.errors import JournalBusyError, JournalError


def _segment(directory: Path, number: int, *records: rec.Rec) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    data = b"".join(rec.encode(r) for r in records)
    (directory / f"seg-{number:08d}.log").write_bytes(data)


def _event(n: int) -> rec.Rec:
    return rec.make(rec.EVENT, id=f"e{n}", route="basket", seq=n, at=1.0, tail={"e": {}})


def test_a_missing_directory_loads_empty_and_is_not_created(tmp_path: Path) -> None:
    loaded = load(tmp_path / "journal", repair=False)
    assert loaded.index.pending == {} and loaded.fds == {}
    assert not (tmp_path / "journal").exists()


def test_segments_replay_in_number_order(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    _segment(directory, 10, rec.make(rec.ACK, id="e1"), _event(3))
    _segment(directory, 9, _event(1), _event(2))
    loaded = load(directory, repair=True)
    assert list(loaded.index.routes["basket"]) == ["e2", "e3"]
    assert sorted(loaded.fds) == [9, 10] and loaded.lost_now == 0
    loaded.close()
    assert loaded.fds == {}


def test_the_writer_records_losses_the_reader_only_counts(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    _segment(directory, 1, _event(1), _event(2))
    path = directory / "seg-00000001.log"
    path.write_bytes(path.read_bytes() + b"\x00" * 40 + rec.encode(_event(3)))
    reader = load(directory, repair=False)
    assert reader.index.counters.lost == 1 and reader.lost_now == 0
    reader.close()
    writer = load(directory, repair=True)
    assert writer.lost_now == 1 and len(writer.index.pending) == 3
    writer.close()
    assert len(list(directory.glob("*.damaged.*"))) == 1


def test_lock_is_exclusive_and_released_with_its_descriptor(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    fd = lock(directory)
    with pytest.raises(JournalBusyError):
        lock(directory)
    os.close(fd)
    os.close(lock(directory))


def test_an_unreadable_segment_is_moved_aside_counted_and_named(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    _segment(directory, 1, _event(1), _event(2))
    (directory / "seg-00000002.log").mkdir()  # EISDIR on read
    _segment(directory, 3, _event(3))
    with capture_logs() as logs:
        loaded = load(directory, repair=True)
    assert sorted(loaded.index.pending) == ["e1", "e2", "e3"]
    assert loaded.lost_now == 1 and loaded.highest == 3
    loaded.close()
    assert (directory / "seg-00000002.log.unreadable.0").is_dir()
    assert not (directory / "seg-00000002.log").exists()
    [entry] = [e for e in logs if e["log_level"] == "error"]
    assert str(directory / "seg-00000002.log") == entry["segment"]
    assert entry["moved_to"] == "seg-00000002.log.unreadable.0"


def test_a_reader_skips_an_unreadable_segment_and_leaves_it(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    _segment(directory, 1, _event(1))
    (directory / "seg-00000002.log").mkdir()
    with capture_logs() as logs:
        loaded = load(directory, repair=False)
    assert list(loaded.index.pending) == ["e1"] and loaded.index.counters.lost == 1
    loaded.close()
    assert (directory / "seg-00000002.log").is_dir()
    assert any(e["log_level"] == "error" and e["segment"].endswith("seg-00000002.log")
               for e in logs)


def test_a_fifo_under_a_segment_name_does_not_hang_the_open(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    _segment(directory, 1, _event(1))
    os.mkfifo(directory / "seg-00000002.log")
    loaded = load(directory, repair=True)
    assert list(loaded.index.pending) == ["e1"] and loaded.lost_now == 1
    loaded.close()
    assert stat.S_ISFIFO(os.lstat(directory / "seg-00000002.log.unreadable.0").st_mode)


def test_an_unreadable_segment_that_cannot_be_moved_is_skipped(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    _segment(directory, 1, _event(1))
    (directory / "seg-00000002.log").mkdir()

    def cannot_move(path: Path, reason: str) -> Path:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    with capture_logs() as logs:
        loaded = load(directory, repair=True, aside=cannot_move)
    assert list(loaded.index.pending) == ["e1"]
    assert (loaded.lost_now, loaded.index.counters.lost, loaded.highest) == (0, 1, 2)
    loaded.close()
    assert (directory / "seg-00000002.log").is_dir()
    [entry] = [e for e in logs if e["log_level"] == "error"]
    assert entry["move_error"] == os.strerror(errno.EROFS) and "retry" in entry["event"]


def test_the_loss_of_an_unreadable_segment_is_estimated_from_its_size(tmp_path: Path) -> None:
    big = tmp_path / "seg-00000003.log"
    big.write_bytes(b"x" * (rec.TYPICAL_RECORD * 10))
    assert estimate_lost_records(big) == 10
    big.write_bytes(b"")
    assert estimate_lost_records(big) == 1
    assert estimate_lost_records(tmp_path) == 1  # a directory: at least one
    assert estimate_lost_records(tmp_path / "gone") == 1


def test_a_failing_journal_directory_is_fatal_and_named(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "journal"
    not_a_directory.write_bytes(b"")
    with pytest.raises(JournalError, match=f"cannot read the journal in {not_a_directory}"):
        load(not_a_directory, repair=True)


def test_no_permission_says_how_to_fix_it(tmp_path: Path) -> None:
    """As a user who may not read the state directory (status run without sudo)."""
    directory = tmp_path / "journal"
    directory.mkdir()
    directory.chmod(0o000)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root if we have it, try, report, leave
        message = b"no error"
        try:
            if os.geteuid() == 0:
                os.setuid(65534)
            load(directory, repair=False)
        except JournalError as exc:
            message = str(exc).encode()
        finally:
            os.write(write, message)
            os._exit(0)
    os.close(write)
    try:
        _, status = os.waitpid(pid, 0)
        message = os.read(read, 4096).decode()
    finally:
        os.close(read)
        directory.chmod(0o700)
    assert os.WIFEXITED(status)
    assert "cannot read the journal" in message and "sudo" in message, message


def test_opening_keeps_only_the_newest_moved_aside_segments(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    _segment(directory, 20, _event(1))
    for n in range(1, 13):
        (directory / f"seg-{n:08d}.log.damaged.0").write_bytes(b"x")
    (directory / "seg-00000021.log").mkdir()  # moved aside at this open: the newest
    load(directory, repair=False).close()  # a reader deletes nothing
    assert len(list(directory.glob("*.damaged.*"))) == 12
    load(directory, repair=True).close()
    left = sorted(p.name for p in directory.glob("seg-*.log.*"))
    assert len(left) == KEEP_ASIDE and "seg-00000021.log.unreadable.0" in left
    assert "seg-00000003.log.damaged.0" not in left and "seg-00000004.log.damaged.0" in left
