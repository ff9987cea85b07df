"""Opening: the writer's lock, and loading a journal directory in every state it can be in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.delivery import journal_records as rec
from agent.delivery.journal_load import load, lock
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


def test_an_unreadable_segment_is_an_io_error_not_damage(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    (directory / "seg-00000001.log").mkdir(parents=True)  # EISDIR on read
    with pytest.raises(JournalError, match="cannot read the journal"):
        load(directory, repair=True)


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
