"""The journal's interface on real files: order, restart, acks, dead letters, bounds, locking."""

from __future__ import annotations

import errno
import os
from dataclasses import replace
from pathlib import Path

import pytest
from journal_support import Clock, FlakyOps, event, open_journal, pending_ids, segments
from structlog.testing import capture_logs

from agent.config import JournalConfig
from agent.delivery import journal as journal_mod
from agent.delivery import journal_records as rec
from agent.delivery.journal import BODY_MAX
from agent.errors import JournalBusyError, JournalError


def test_pending_is_oldest_first_per_route_and_overall(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    routes = ["basket", "pending", "basket", "basket", "pending"]
    for n, route in enumerate(routes):
        j.append(event(n, route))
    assert pending_ids(j, "basket") == [event(n).event_id for n in (0, 2, 3)]
    assert pending_ids(j, "pending") == [event(n).event_id for n in (1, 4)]
    assert pending_ids(j) == [event(n).event_id for n in range(5)]
    entries = j.pending("basket", limit=2)
    assert [e.event for e in entries] == [event(0, "basket"), event(2, "basket")]
    assert entries[0].seq < entries[1].seq
    assert j.pending("nowhere") == []
    assert j.pending(limit=0) == []
    j.close()


def test_ack_removes_only_that_event(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    for n in range(4):
        j.append(event(n))
    j.ack(event(1).event_id)
    j.ack("never-journaled")  # a no-op, not an error
    assert pending_ids(j) == [event(n).event_id for n in (0, 2, 3)]
    assert j.stats().pending == 3
    j.close()


def test_restart_keeps_everything(tmp_path: Path) -> None:
    clock = Clock()
    j = open_journal(tmp_path, wall_clock=clock, clock=clock)
    for n in range(10):
        j.append(event(n, "pending" if n % 3 == 0 else "basket"))
        clock.now += 1
    j.ack(event(4).event_id)
    j.dead_letter(event(5).event_id, 422, "no such product", "refused")
    before = (j.pending(limit=100), j.dead_letters(), replace(j.stats(), oldest_age_s=None))
    assert j.stats().oldest_age_s == 10.0  # event 0, counted in monotonic time
    j.close()
    again = open_journal(tmp_path, wall_clock=clock, clock=clock)
    assert (again.pending(limit=100), again.dead_letters(),
            replace(again.stats(), oldest_age_s=None)) == before
    # Event 0 was appended with an unsynchronised clock: its age counts from this open.
    # Event 1 (synchronised) is 9 s old by the wall clock.
    assert (event(0).clock_synced, event(1).clock_synced) == (False, True)
    assert again.stats().oldest_age_s == 9.0
    assert again.pending(limit=100)[0].appended_at == 1_800_000_000.0
    again.append(event(99))  # seq keeps rising after a restart
    assert again.pending(limit=100)[-1].seq > before[0][-1].seq
    again.close()


def test_events_round_trip_exactly(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    originals = [event(n, "pending" if n % 2 else "basket") for n in range(7)]
    for e in originals:
        j.append(e)
    j.close()
    j = open_journal(tmp_path)
    assert [entry.event for entry in j.pending(limit=100)] == originals
    j.close()


def test_stats(tmp_path: Path) -> None:
    clock = Clock()
    j = open_journal(tmp_path, wall_clock=clock, clock=clock)
    empty = j.stats()
    assert (empty.pending, empty.pending_by_route, empty.oldest_age_s) == (0, {}, None)
    j.append(event(0, "pending"))
    clock.now += 30
    j.append(event(1, "basket"))
    clock.now += 12.5
    stats = j.stats()
    assert stats.pending == 2
    assert stats.pending_by_route == {"pending": 1, "basket": 1}
    assert stats.oldest_age_s == pytest.approx(42.5)
    assert (stats.dead_letters, stats.lost_records, stats.overflowed, stats.expired) == (0, 0, 0, 0)
    j.close()


def test_duplicate_append_is_ignored(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    j.append(event(1))
    with capture_logs() as logs:
        j.append(event(1))
    assert pending_ids(j) == [event(1).event_id]
    assert any(entry["event"] == "event already journaled; not appended twice" for entry in logs)
    j.close()


def test_dead_letters_and_requeue_keep_the_event_id(tmp_path: Path) -> None:
    clock = Clock()
    j = open_journal(tmp_path, wall_clock=clock, clock=clock)
    for n in range(3):
        j.append(event(n))
    clock.now += 5
    j.dead_letter(event(0).event_id, 422, "x" * 2000, "refused")
    j.dead_letter(event(1).event_id, 400, "bad", "refused")
    j.dead_letter("unknown", 400, "bad", "refused")  # logged, no effect
    letters = j.dead_letters()
    assert [d.event_id for d in letters] == [event(0).event_id, event(1).event_id]
    assert letters[0].event == event(0)
    assert (letters[0].status, letters[0].reason, letters[0].dead_at) == (422, "refused", clock.now)
    assert letters[0].body == "x" * BODY_MAX
    assert pending_ids(j) == [event(2).event_id]
    assert j.stats().dead_letters == 2

    assert j.requeue([event(1).event_id, "unknown", event(1).event_id]) == 1
    assert pending_ids(j) == [event(2).event_id, event(1).event_id]  # back at the end
    assert j.requeue() == 1
    assert j.requeue() == 0
    assert j.dead_letters() == []
    assert pending_ids(j) == [event(n).event_id for n in (2, 1, 0)]
    j.close()
    j = open_journal(tmp_path, wall_clock=clock, clock=clock)
    assert pending_ids(j) == [event(n).event_id for n in (2, 1, 0)]
    assert j.dead_letters() == []
    j.close()


def test_ack_of_a_dead_letter_removes_it(tmp_path: Path) -> None:
    """An event overflowed while it was in flight and then delivered is gone for good."""
    j = open_journal(tmp_path)
    j.append(event(0))
    j.dead_letter(event(0).event_id, 0, "", "overflow")
    j.ack(event(0).event_id)
    assert j.dead_letters() == [] and j.stats().pending == 0
    j.close()


def test_drop_oldest_moves_the_oldest_to_dead_letters(tmp_path: Path) -> None:
    config = JournalConfig(max_events=3, full_policy="drop_oldest")
    j = open_journal(tmp_path, config)
    j.append(event(0, "pending"))
    j.append(event(1, "basket"))
    j.append(event(2, "pending"))
    with capture_logs() as logs:
        j.append(event(3, "basket"))
    assert pending_ids(j) == [event(n).event_id for n in (1, 2, 3)]
    [letter] = j.dead_letters()
    assert (letter.event_id, letter.reason, letter.status) == (event(0).event_id, "overflow", 0)
    assert j.stats().overflowed == 1
    assert any(e["log_level"] == "error" and e["count"] == 1 for e in logs)
    j.close()
    j = open_journal(tmp_path, config)
    assert j.stats().overflowed == 1
    j.close()


def test_reject_new_refuses_when_full(tmp_path: Path) -> None:
    config = JournalConfig(max_events=2, full_policy="reject_new")
    j = open_journal(tmp_path, config)
    j.append(event(0))
    j.append(event(1))
    with pytest.raises(JournalError, match="journal full"):
        j.append(event(2))
    assert pending_ids(j) == [event(0).event_id, event(1).event_id]
    j.ack(event(0).event_id)
    j.append(event(2))
    assert pending_ids(j) == [event(1).event_id, event(2).event_id]
    j.close()


def test_a_smaller_max_events_after_restart_overflows_down_to_it(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    for n in range(6):
        j.append(event(n))
    j.close()
    j = open_journal(tmp_path, JournalConfig(max_events=3))
    j.append(event(6))
    assert pending_ids(j) == [event(n).event_id for n in (4, 5, 6)]
    assert j.stats().overflowed == 4
    j.close()


def test_expired_events_move_to_dead_letters(tmp_path: Path) -> None:
    clock = Clock()
    config = JournalConfig(max_age_s=100.0)
    j = open_journal(tmp_path, config, wall_clock=clock, clock=clock)
    j.append(event(0, "pending"))
    clock.now += 60
    j.append(event(1, "basket"))
    clock.now += 50  # event 0 is 110 s old, event 1 50 s
    with capture_logs() as logs:
        assert pending_ids(j) == [event(1).event_id]
    assert [(d.event_id, d.reason) for d in j.dead_letters()] == [(event(0).event_id, "expired")]
    assert j.stats().expired == 1
    assert any(e["log_level"] == "error" and e.get("count") == 1 for e in logs)
    clock.now += 60
    j.append(event(2))  # expiry also runs on append
    assert pending_ids(j) == [event(2).event_id]
    assert j.stats().expired == 2
    j.close()
    j = open_journal(tmp_path, config, wall_clock=clock, clock=clock)
    assert (j.stats().expired, j.stats().dead_letters) == (2, 2)
    j.close()


def test_requeued_events_get_a_fresh_age(tmp_path: Path) -> None:
    clock = Clock()
    j = open_journal(tmp_path, JournalConfig(max_age_s=100.0), wall_clock=clock, clock=clock)
    j.append(event(0))
    clock.now += 200
    assert j.pending() == []
    assert j.requeue() == 1
    [entry] = j.pending()
    assert entry.appended_at == clock.now
    j.close()


def test_dead_letters_are_bounded_oldest_dropped(tmp_path: Path) -> None:
    config = JournalConfig(max_dead_letters=2)
    j = open_journal(tmp_path, config)
    for n in range(4):
        j.append(event(n))
    with capture_logs() as logs:
        for n in range(4):
            j.dead_letter(event(n).event_id, 409, "", "refused")
    assert [d.event_id for d in j.dead_letters()] == [event(2).event_id, event(3).event_id]
    assert j.stats().dead_dropped == 2
    assert sum(e["event"].startswith("dead letters over") for e in logs) == 2
    j.close()
    j = open_journal(tmp_path, config)
    assert [d.event_id for d in j.dead_letters()] == [event(2).event_id, event(3).event_id]
    assert j.stats().dead_dropped == 2
    j.close()


def test_requeue_under_reject_new_takes_only_what_fits(tmp_path: Path) -> None:
    config = JournalConfig(max_events=3, full_policy="reject_new")
    j = open_journal(tmp_path, config)
    for n in range(3):
        j.append(event(n))
    for n in range(3):
        j.dead_letter(event(n).event_id, 422, "", "refused")
    j.append(event(3))
    assert j.requeue() == 2
    assert j.stats().pending == 3 and j.stats().dead_letters == 1
    assert j.requeue() == 0
    j.close()


def test_requeue_under_drop_oldest_overflows_the_oldest_pending(tmp_path: Path) -> None:
    j = open_journal(tmp_path, JournalConfig(max_events=2))
    j.append(event(0))
    j.dead_letter(event(0).event_id, 422, "", "refused")
    j.append(event(1))
    j.append(event(2))
    assert j.requeue() == 1
    assert pending_ids(j) == [event(2).event_id, event(0).event_id]
    assert [(d.event_id, d.reason) for d in j.dead_letters()] == [(event(1).event_id, "overflow")]
    j.close()


def test_second_writer_is_refused_with_a_fix(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    with pytest.raises(JournalBusyError) as info:
        open_journal(tmp_path)
    assert str(info.value) == ("another basketagent holds the journal: stop the service first "
                               "(systemctl stop basketagent)")
    j.close()
    open_journal(tmp_path).close()  # released on close


def test_read_only_opens_beside_the_writer_and_never_writes(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    j.append(event(0))
    j.dead_letter(event(0).event_id, 422, "nope", "refused")
    j.append(event(1, "pending"))
    before = {p.name: p.read_bytes() for p in (tmp_path / "journal").iterdir()}
    reader = open_journal(tmp_path, read_only=True)
    assert pending_ids(reader) == [event(1).event_id]
    assert [d.event_id for d in reader.dead_letters()] == [event(0).event_id]
    assert reader.stats().pending == 1
    for call in (lambda: reader.append(event(5)), lambda: reader.ack(event(1).event_id),
                 lambda: reader.dead_letter(event(1).event_id, 1, "", "x"), reader.requeue):
        with pytest.raises(JournalError, match="read-only"):
            call()
    reader.close()
    assert {p.name: p.read_bytes() for p in (tmp_path / "journal").iterdir()} == before
    j.close()


def test_read_only_of_a_missing_journal_creates_nothing(tmp_path: Path) -> None:
    reader = open_journal(tmp_path / "state", read_only=True)
    assert reader.stats().pending == 0 and reader.pending() == [] and reader.dead_letters() == []
    reader.close()
    assert not (tmp_path / "state").exists()


def test_read_only_expires_nothing(tmp_path: Path) -> None:
    clock = Clock()
    config = JournalConfig(max_age_s=10.0)
    with open_journal(tmp_path, config, wall_clock=clock, clock=clock) as j:
        j.append(event(1))
    clock.now += 100
    reader = open_journal(tmp_path, config, wall_clock=clock, clock=clock, read_only=True)
    assert pending_ids(reader) == [event(1).event_id]
    assert reader.stats().oldest_age_s == pytest.approx(100)
    reader.close()


def test_closed_journal_refuses_calls_and_close_is_idempotent(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    j.append(event(0))
    j.close()
    j.close()
    with pytest.raises(JournalError, match="closed"):
        j.append(event(1))
    with pytest.raises(JournalError, match="closed"):
        j.pending()


def test_unwritable_state_dir_is_a_journal_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(JournalError, match="cannot create the journal"):
        open_journal(blocker)


def test_append_is_one_write_and_one_fdatasync(tmp_path: Path) -> None:
    ops = FlakyOps()
    j = open_journal(tmp_path, ops=ops)
    writes, syncs = ops.writes, ops.syncs
    j.append(event(0))
    assert (ops.writes - writes, ops.syncs - syncs) == (1, 1)
    j.close()


def test_acks_are_synced_in_batches_and_on_time(tmp_path: Path) -> None:
    ops = FlakyOps()
    tick = Clock(100.0)
    j = open_journal(tmp_path, ops=ops, clock=tick)
    for n in range(journal_mod.ACK_SYNC_EVERY + 2):
        j.append(event(n))
    syncs = ops.syncs
    for n in range(journal_mod.ACK_SYNC_EVERY - 1):
        j.ack(event(n).event_id)
    assert ops.syncs == syncs  # written, not yet synced
    j.ack(event(journal_mod.ACK_SYNC_EVERY - 1).event_id)
    assert ops.syncs == syncs + 1
    j.ack(event(journal_mod.ACK_SYNC_EVERY).event_id)
    j.pending()
    assert ops.syncs == syncs + 1
    tick.now += journal_mod.ACK_SYNC_S
    j.pending()  # the next call after the window syncs
    assert ops.syncs == syncs + 2
    j.ack(event(journal_mod.ACK_SYNC_EVERY + 1).event_id)
    j.close()  # and close syncs what is left
    assert ops.syncs == syncs + 3


def test_stats_syncs_acks_that_are_due(tmp_path: Path) -> None:
    """A sender idle after its last ack still calls stats() for its status line."""
    ops = FlakyOps()
    tick = Clock(100.0)
    j = open_journal(tmp_path, ops=ops, clock=tick)
    j.append(event(0))
    j.append(event(1))
    syncs = ops.syncs
    j.ack(event(0).event_id)
    j.stats()
    assert ops.syncs == syncs  # not due yet
    tick.now += journal_mod.ACK_SYNC_S
    ops.fail_sync = errno.EIO
    with capture_logs() as logs:
        assert j.stats().pending == 1  # a failing sync does not fail the report
    assert any(e["event"] == "journal ack sync failed" for e in logs)
    ops.fail_sync = None
    j.stats()
    assert ops.syncs == syncs + 2  # the failed try and the one that worked
    j.stats()
    assert ops.syncs == syncs + 2  # nothing left to sync
    j.close()


def test_segments_roll_and_compaction_deletes_acked_ones(tmp_path: Path) -> None:
    j = open_journal(tmp_path, segment_bytes=4096)
    for n in range(200):
        j.append(event(n))
        if n >= 3:
            j.ack(event(n - 3).event_id)
    assert len(segments(tmp_path)) <= 3
    assert pending_ids(j) == [event(n).event_id for n in (197, 198, 199)]
    j.close()
    j = open_journal(tmp_path, segment_bytes=4096)
    assert pending_ids(j) == [event(n).event_id for n in (197, 198, 199)]
    j.close()


def test_compaction_copies_long_lived_events_forward(tmp_path: Path) -> None:
    """One old unacked event and a dead letter must not pin every later segment on disk."""
    j = open_journal(tmp_path, segment_bytes=4096)
    j.append(event(0, "pending"))
    j.append(event(1))
    j.dead_letter(event(1).event_id, 422, "refused for good", "refused")
    for n in range(2, 400):
        j.append(event(n))
        j.ack(event(n).event_id)
    assert len(segments(tmp_path)) <= 4
    total = sum(p.stat().st_size for p in segments(tmp_path))
    assert total < 5 * 4096
    j.close()
    j = open_journal(tmp_path, segment_bytes=4096)
    assert pending_ids(j) == [event(0).event_id]
    assert [d.event_id for d in j.dead_letters()] == [event(1).event_id]
    assert j.dead_letters()[0].body == "refused for good"
    j.close()


def test_counters_survive_compaction(tmp_path: Path) -> None:
    config = JournalConfig(max_events=1, max_dead_letters=1)
    j = open_journal(tmp_path, config, segment_bytes=2048)
    for n in range(60):
        j.append(event(n))
    assert (j.stats().overflowed, j.stats().dead_dropped) == (59, 58)
    j.close()
    assert not (tmp_path / "journal" / "seg-00000001.log").exists()
    j = open_journal(tmp_path, config, segment_bytes=2048)
    assert (j.stats().overflowed, j.stats().dead_dropped) == (59, 58)
    j.close()


def test_journal_files_are_private(tmp_path: Path) -> None:
    open_journal(tmp_path).close()
    assert (tmp_path / "journal").stat().st_mode & 0o777 == 0o700
    for path in (tmp_path / "journal").iterdir():
        assert path.stat().st_mode & 0o077 == 0, path


def test_threads_append_and_ack_concurrently(tmp_path: Path) -> None:
    import threading

    j = open_journal(tmp_path, segment_bytes=8192)
    appended: list[str] = []

    def producer() -> None:
        for n in range(150):
            j.append(event(n))
            appended.append(event(n).event_id)

    def consumer() -> None:
        acked = 0
        while acked < 100:
            for entry in j.pending(limit=10):
                if acked < 100:
                    j.ack(entry.event.event_id)
                    acked += 1

    threads = [threading.Thread(target=producer), threading.Thread(target=consumer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert pending_ids(j) == [event(n).event_id for n in range(100, 150)]
    j.close()


def test_failed_compaction_keeps_everything_and_is_retried(tmp_path: Path) -> None:
    ops = FlakyOps()
    ops.fail_if = lambda data: bool(data[11] & rec.COPY)  # flags byte of the first frame
    j = open_journal(tmp_path, ops=ops, segment_bytes=2048)
    j.append(event(0, "pending"))  # never acked: must be copied forward to free its segment
    with capture_logs() as logs:
        for n in range(1, 120):
            j.append(event(n))
            j.ack(event(n).event_id)
    assert any(e["event"].startswith("journal compaction stopped") for e in logs)
    stuck = len(segments(tmp_path))
    assert stuck > 6
    ops.fail_if = None
    for n in range(120, 160):
        j.append(event(n))
        j.ack(event(n).event_id)
    assert len(segments(tmp_path)) < stuck
    assert pending_ids(j) == [event(0).event_id]
    j.close()
    with open_journal(tmp_path, segment_bytes=2048) as again:
        assert pending_ids(again) == [event(0).event_id]
        assert again.stats().lost_records == 0


def test_expiry_is_checked_at_most_once_a_second(tmp_path: Path) -> None:
    clock = Clock()
    j = open_journal(tmp_path, JournalConfig(max_age_s=10.0), wall_clock=clock, clock=clock)
    j.append(event(0))
    clock.now += 9.8
    j.append(event(1))  # checks: nothing old enough yet
    clock.now += 0.5  # event 0 is now 10.3 s old, but the last check was 0.5 s ago
    assert pending_ids(j)[0] == event(0).event_id
    clock.now += 0.5
    assert pending_ids(j) == [event(1).event_id]
    clock.now -= 3600  # the wall clock set back: checked again, nothing younger expires
    assert pending_ids(j) == [event(1).event_id]
    j.close()


def test_an_absurdly_large_event_is_refused_cleanly(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    huge = replace(event(0), name="x" * (2 << 20))
    with pytest.raises(JournalError, match="cannot be written"):
        j.append(huge)
    j.append(event(1))
    assert pending_ids(j) == [event(1).event_id]
    j.close()


def test_open_and_close_leak_no_descriptors(tmp_path: Path) -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    with open_journal(tmp_path, segment_bytes=2048) as j:
        for n in range(40):
            j.append(event(n))
    before = open_fds()
    for round_no in range(5):
        with open_journal(tmp_path, segment_bytes=2048) as j:
            j.append(event(100 + round_no))
        open_journal(tmp_path, read_only=True).close()
    assert open_fds() == before
