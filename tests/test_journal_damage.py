"""Damaged journal files open: intact records kept, the rest moved aside, the loss counted."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
from journal_support import event, open_journal, pending_ids, segments
from structlog.testing import capture_logs

from agent.delivery import journal_records as rec
from agent.errors import JournalError

N_EVENTS = 40


def _written(tmp_path: Path, n: int = N_EVENTS,
             **kwargs) -> tuple[Path, list[tuple[int, int, rec.Rec]]]:
    """A journal holding n events in one segment, and the records of that segment."""
    state = tmp_path / "pristine"
    with open_journal(state, **kwargs) as j:
        for i in range(n):
            j.append(event(i, "pending" if i % 4 == 0 else "basket"))
    [segment] = segments(state)
    found = rec.scan(segment.read_bytes())
    segment.write_bytes(segment.read_bytes()[:found.data_end])  # as a finished segment is
    return state, found.records


def _copy(state: Path, target: Path) -> Path:
    shutil.copytree(state, target)
    return target


def _event_spans(records: list[tuple[int, int, rec.Rec]]) -> list[tuple[int, int, str]]:
    return [(offset, offset + size, r.id) for offset, size, r in records if r.kind == rec.EVENT]


def _aside(state: Path) -> list[Path]:
    return sorted((state / "journal").glob("*.damaged.*"))


def test_truncation_at_many_offsets_keeps_every_whole_record(tmp_path: Path) -> None:
    pristine, records = _written(tmp_path)
    data = segments(pristine)[0].read_bytes()
    spans = _event_spans(records)
    rng = random.Random(7)
    cuts = sorted({0, 1, len(data) - 1, *(rng.randrange(len(data)) for _ in range(120)),
                   *(end for _, end, _ in spans[:5]), *(end - 1 for _, end, _ in spans[:5])})
    for cut in cuts:
        state = _copy(pristine, tmp_path / f"cut{cut}")
        segment = segments(state)[0]
        segment.write_bytes(data[:cut])
        on_boundary = cut in (0, records[0][1]) or any(end == cut for _, end, _ in spans)
        with open_journal(state) as j:
            assert pending_ids(j) == [eid for _, end, eid in spans if end <= cut], cut
            assert j.stats().lost_records == (0 if on_boundary else 1), cut
            j.append(event(1000))  # and it takes new events
        assert len(_aside(state)) == (0 if on_boundary else 1)
        if not on_boundary:
            assert _aside(state)[0].read_bytes() == data[:cut]  # the original, whole
        with open_journal(state) as j:  # the repair holds: no new loss, nothing moved again
            assert j.stats().lost_records == (0 if on_boundary else 1)
            assert pending_ids(j)[-1] == event(1000).event_id
        assert len(_aside(state)) == (0 if on_boundary else 1)
        shutil.rmtree(state)


def test_flipped_bytes_lose_only_the_record_they_hit(tmp_path: Path) -> None:
    pristine, records = _written(tmp_path)
    data = segments(pristine)[0].read_bytes()
    spans = _event_spans(records)
    rng = random.Random(11)
    for trial in range(80):
        position = rng.randrange(len(data))
        state = _copy(pristine, tmp_path / f"flip{trial}")
        damaged = bytearray(data)
        damaged[position] ^= 1 << rng.randrange(8)
        segments(state)[0].write_bytes(bytes(damaged))
        with capture_logs() as logs:
            j = open_journal(state)
        hit = {eid for start, end, eid in spans if start <= position < end}
        assert pending_ids(j) == [eid for _, _, eid in spans if eid not in hit], position
        assert j.stats().lost_records == 1, position
        assert any(e["log_level"] == "error" and e["event"] == "journal damage found: records lost"
                   for e in logs)
        j.close()
        assert _aside(state)[0].read_bytes() == bytes(damaged)
        shutil.rmtree(state)


def test_zeroed_4k_blocks(tmp_path: Path) -> None:
    pristine, records = _written(tmp_path, n=120)
    data = segments(pristine)[0].read_bytes()
    spans = _event_spans(records)
    assert len(data) > 4 * 4096
    for block in range(len(data) // 4096 + 1):
        start, end = block * 4096, min(len(data), (block + 1) * 4096)
        state = _copy(pristine, tmp_path / f"zero{block}")
        segments(state)[0].write_bytes(data[:start] + bytes(end - start) + data[end:])
        with open_journal(state) as j:
            survivors = [eid for s, e, eid in spans if e <= start or s >= end]
            assert pending_ids(j) == survivors, block
            hit = len(spans) - len(survivors)
            if end == len(data):
                # Zeroes to the end read as space zeroed ahead of appends: this one
                # kind of damage (a zeroed tail) is indistinguishable and not counted.
                assert j.stats().lost_records <= 1, block
            else:
                # an estimate from the damaged bytes: within a record or two of the truth
                assert abs(j.stats().lost_records - hit) <= 2, (block, j.stats().lost_records)
        shutil.rmtree(state)


def test_damage_in_an_older_segment_leaves_later_ones_whole(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with open_journal(state, segment_bytes=2048) as j:
        for i in range(30):
            j.append(event(i))
    files = segments(state)
    assert len(files) >= 3
    middle = files[1]
    middle_ids = {r.id for _, _, r in rec.scan(middle.read_bytes()).records
                  if r.kind == rec.EVENT}
    middle.write_bytes(bytes(100) + middle.read_bytes()[100:])
    with open_journal(state, read_only=True) as reader:  # later segments' counters do not hide it
        assert reader.stats().lost_records >= 1
    with open_journal(state, segment_bytes=2048) as j:
        ids = pending_ids(j)
        later = [event(i).event_id for i in range(30) if event(i).event_id not in middle_ids]
        assert set(later) <= set(ids)
        assert ids == sorted(ids)  # still in order
        assert j.stats().lost_records >= 1


def test_read_only_counts_damage_but_moves_nothing(tmp_path: Path) -> None:
    pristine, records = _written(tmp_path)
    state = _copy(pristine, tmp_path / "ro")
    segment = segments(state)[0]
    damaged = bytearray(segment.read_bytes())
    damaged[records[3][0] + 12] ^= 0x40
    segment.write_bytes(bytes(damaged))
    reader = open_journal(state, read_only=True)
    assert reader.stats().lost_records == 1
    assert len(pending_ids(reader)) == N_EVENTS - 1
    reader.close()
    assert segment.read_bytes() == bytes(damaged) and _aside(state) == []


def test_read_only_ignores_a_write_in_progress_at_the_tail(tmp_path: Path) -> None:
    """status reads while the service appends: a half-written last record is not a loss."""
    pristine, _ = _written(tmp_path)
    state = _copy(pristine, tmp_path / "ro")
    segment = segments(state)[0]
    segment.write_bytes(segment.read_bytes()[:-10])
    reader = open_journal(state, read_only=True)
    assert reader.stats().lost_records == 0
    assert len(pending_ids(reader)) == N_EVENTS - 1
    reader.close()


def test_garbage_and_stray_files(tmp_path: Path) -> None:
    state = tmp_path / "state"
    directory = state / "journal"
    directory.mkdir(parents=True)
    (directory / "seg-00000001.log").write_bytes(b"this was never a journal" * 50)
    (directory / "notes.txt").write_text("ignored")
    (directory / "seg-1.log").write_text("not our name pattern: ignored")
    with open_journal(state) as j:
        assert j.stats().pending == 0 and j.stats().lost_records >= 1
        j.append(event(1))
    with open_journal(state) as j:
        assert pending_ids(j) == [event(1).event_id]
    assert (directory / "notes.txt").read_text() == "ignored"


@pytest.mark.parametrize("kind", [rec.ACK, rec.DEAD])
def test_a_lost_ack_or_dead_record_brings_the_event_back_not_loses_it(tmp_path: Path,
                                                                     kind: int) -> None:
    state = tmp_path / "state"
    with open_journal(state) as j:
        for i in range(3):
            j.append(event(i))
        if kind == rec.ACK:
            j.ack(event(1).event_id)
        else:
            j.dead_letter(event(1).event_id, 422, "", "refused")
        j.append(event(3))
    segment = segments(state)[0]
    records = rec.scan(segment.read_bytes()).records
    [offset] = [offset for offset, _, r in records if r.kind == kind]
    data = bytearray(segment.read_bytes())
    data[offset + rec.HEADER_SIZE + 3] ^= 0x01
    segment.write_bytes(bytes(data))
    with open_journal(state) as j:
        assert pending_ids(j) == [event(i).event_id for i in range(4)]  # at-least-once
        assert j.stats().lost_records == 1


def test_read_only_opens_beside_a_busy_writer_never_fail_or_report_loss(tmp_path: Path) -> None:
    state = tmp_path / "state"
    writer = open_journal(state, segment_bytes=2048)
    stop = threading.Event()
    failures: list[Exception] = []

    def busy() -> None:
        n = 0
        try:
            while not stop.is_set():
                writer.append(event(n))
                if n % 3:
                    writer.ack(event(n).event_id)
                n += 1
        except Exception as exc:  # noqa: BLE001 - reported by the main thread below
            failures.append(exc)

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        for _ in range(60):
            with open_journal(state, read_only=True) as reader:
                assert reader.stats().lost_records == 0
                ids = pending_ids(reader)
                assert ids == sorted(ids)
                numbers = [int(i[-12:]) for i in ids]
                # never-acked ones, and perhaps the newest whose ack was not written yet
                assert all(k % 3 == 0 or k >= max(numbers) - 1 for k in numbers)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive() and failures == []
    writer.close()


def test_an_unreadable_last_segment_does_not_stop_the_journal(tmp_path: Path) -> None:
    """A directory where the last segment was: the journal opens and appends past it."""
    with open_journal(tmp_path) as j:
        j.append(event(1))
    journal_dir = tmp_path / "journal"
    (journal_dir / "seg-00000002.log").mkdir()
    with open_journal(tmp_path, read_only=True) as reader:
        assert pending_ids(reader) == [event(1).event_id]
        assert reader.stats().lost_records == 1
    with open_journal(tmp_path) as j:
        assert j.stats().lost_records == 1
        j.append(event(2))
    assert [p.name for p in segments(tmp_path)] == ["seg-00000001.log", "seg-00000003.log"]
    assert (journal_dir / "seg-00000002.log.unreadable.0").is_dir()
    with open_journal(tmp_path) as j:
        assert pending_ids(j) == [event(1).event_id, event(2).event_id]
        assert j.stats().lost_records == 1  # recorded once, not again


def test_a_last_segment_that_cannot_be_written_gets_a_successor(tmp_path: Path) -> None:
    """A segment left read-only (say, a root-owned copy): appends go to a new one."""
    # As root, the child runs as nobody, who must be able to reach the state directory.
    state = Path(tempfile.mkdtemp(prefix="journal-perm-")) if os.geteuid() == 0 else tmp_path
    try:
        _successor_after_a_read_only_segment(state)
    finally:
        if state != tmp_path:
            shutil.rmtree(state)


def _successor_after_a_read_only_segment(state: Path) -> None:
    with open_journal(state) as j:
        j.append(event(1))
    journal_dir = state / "journal"
    (journal_dir / "seg-00000001.log").chmod(0o444)
    if os.geteuid() == 0:  # the segment stays root's; the rest becomes the child's
        for path in (state, journal_dir, journal_dir / "LOCK"):
            os.chown(path, 65534, 65534)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: an unprivileged user, as the service runs
        message = b"ok"
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            with open_journal(state) as j:
                j.append(event(2))
                if pending_ids(j) != [event(1).event_id, event(2).event_id]:
                    message = b"wrong pending"
        except (JournalError, OSError) as exc:  # reported to the parent, which asserts
            message = repr(exc).encode()
        finally:
            os.write(write, message)
            os._exit(0)
    os.close(write)
    try:
        os.waitpid(pid, 0)
        message = os.read(read, 4096).decode()
    finally:
        os.close(read)
    assert message == "ok"
    assert [p.name for p in segments(state)] == ["seg-00000001.log", "seg-00000002.log"]
